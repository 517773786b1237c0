// Which dependencies the Lambda artifact carries, hence which runtime serves the
// model: param `profile`, slim (the default) or full. serverless.yml resolves
// `${file(./infra/lambda/profile.js):name}` by calling these exports; a bad
// param fails `package` and `deploy` with one line, before anything is built.
'use strict';

const { refusal } = require('./access.js');

// Lambda's 250 MB (unzipped) holds one of the two stacks, not both.
const PROFILES = {
  // onnxruntime without scikit-learn: only versions with a verified ONNX twin.
  slim: { requirements: 'requirements-lambda-slim.txt', modelRuntime: 'onnx' },
  // scikit-learn, scipy, joblib and pandas: every version, from its pickle.
  full: { requirements: 'requirements-lambda.txt', modelRuntime: 'sklearn' },
};

async function profile({ options, resolveVariable }) {
  const given = [].concat(options.param || []).map((item) => String(item).split('=')[0]);
  // It used to be a param of its own: a value passed that way would be ignored.
  if (given.includes('modelRuntime')) {
    throw refusal(
      '--param=modelRuntime is no longer read: --param=profile=full serves the ' +
        'pickle (MODEL_RUNTIME=sklearn), --param=profile=slim the ONNX twin ' +
        '(MODEL_RUNTIME=onnx)'
    );
  }
  const name = String((await resolveVariable('param:profile')) ?? '').trim();
  if (!Object.hasOwn(PROFILES, name)) {
    throw refusal(`param "profile" must be full or slim, got "${name}"`);
  }
  return PROFILES[name];
}

// serverless-python-requirements' fileName, relative to function/.
module.exports.requirements = async (context) => (await profile(context)).requirements;

// MODEL_RUNTIME: the only runtime the profile's artifact can load.
module.exports.modelRuntime = async (context) => (await profile(context)).modelRuntime;
