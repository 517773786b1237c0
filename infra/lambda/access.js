// Who may call the Lambda and what it may read, derived from the stage's params:
// private unless `public` is "true" (then with API keys, unless
// `publicWithoutApiKeys` is "true"), and read access to exactly the SSM
// parameters the stage names. serverless.yml resolves `${file(...):name}` by
// calling these exports; a bad param fails `package` and `deploy` with its
// message, before anything reaches AWS.
'use strict';

// SSM hierarchical names (the ARN is ...:parameter<name>); /aws and /ssm are
// reserved by AWS.
const PARAMETER_NAME = /^\/(?!aws\/|ssm\/)[A-Za-z0-9_.\-/]{1,1010}$/i;
// Settings that used to be plain environment variables: a value passed the old
// way would be silently ignored, leaving the function without its keys.
const REMOVED = { apiKeys: 'apiKeysParameter', modelSigningKey: 'signingKeyParameter' };

// serverless prints a rejection's `stack`: a message is all a user needs.
function refusal(message) {
  const error = new Error(message);
  error.stack = message;
  return error;
}
module.exports.refusal = refusal;

async function param(resolveVariable, name) {
  return String((await resolveVariable(`param:${name}`)) ?? '').trim();
}

function refuseRemovedParams(options) {
  const given = [].concat(options.param || []).map((item) => String(item).split('=')[0]);
  for (const [old, replacement] of Object.entries(REMOVED)) {
    if (given.includes(old)) {
      throw refusal(
        `--param=${old} is no longer read: store the keys in an SSM parameter ` +
          `and pass its name as --param=${replacement}=/<path>`
      );
    }
  }
}

async function flag(resolveVariable, name) {
  const value = (await param(resolveVariable, name)).toLowerCase();
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw refusal(`param "${name}" must be true or false, got "${value}"`);
}

// CloudFormation's own values: the account id is unknown offline.
function parameterArn(name) {
  return {
    'Fn::Join': [
      '',
      [
        'arn:',
        { Ref: 'AWS::Partition' },
        ':ssm:',
        { Ref: 'AWS::Region' },
        ':',
        { Ref: 'AWS::AccountId' },
        `:parameter${name}`,
      ],
    ],
  };
}

async function secretParameters({ resolveVariable }) {
  const names = [];
  for (const key of ['apiKeysParameter', 'signingKeyParameter']) {
    const name = await param(resolveVariable, key);
    if (!name) continue;
    if (!PARAMETER_NAME.test(name)) {
      throw refusal(
        `param "${key}" must be an SSM parameter path such as ` +
          `/sklearn-serverless/prod/api-keys, got "${name}"`
      );
    }
    names.push(name);
  }
  return names;
}

// An HTTP API IAM authorizer: callers sign requests (SigV4) with credentials
// allowed execute-api:Invoke, as Cloud Functions callers need run.invoker.
// An empty string leaves the route without an authorizer: then API keys must
// be named, unless publicWithoutApiKeys says the function is meant to be open
// (a forgotten param would otherwise leave it open to anyone on the internet).
module.exports.authorizer = async (context) => {
  refuseRemovedParams(context.options);
  const open = await flag(context.resolveVariable, 'publicWithoutApiKeys');
  if (!(await flag(context.resolveVariable, 'public'))) return { type: 'aws_iam' };
  if (!(await param(context.resolveVariable, 'apiKeysParameter')) && !open) {
    throw refusal(
      'param public=true without apiKeysParameter lets anyone on the internet ' +
        'call the function: name the SSM parameter holding API keys ' +
        '(--param=apiKeysParameter=/path), or pass ' +
        '--param=publicWithoutApiKeys=true if it is meant to be open'
    );
  }
  return '';
};

// The model's S3 statements (custom.modelReadStatements) plus, for each named
// parameter: ssm:GetParameter on it, and kms:Decrypt only through SSM and only
// for that parameter (its ARN is the encryption context SSM sends to KMS), so
// a SecureString under a customer managed key works too.
module.exports.statements = async (context) => {
  refuseRemovedParams(context.options);
  const base = await context.resolveConfigurationProperty(['custom', 'modelReadStatements']);
  const names = await secretParameters(context);
  if (!names.length) return base;
  const arns = names.map(parameterArn);
  return [
    ...base,
    { Effect: 'Allow', Action: ['ssm:GetParameter'], Resource: arns },
    {
      Effect: 'Allow',
      Action: ['kms:Decrypt'],
      Resource: '*',
      Condition: {
        StringEquals: {
          'kms:ViaService': {
            'Fn::Join': ['', ['ssm.', { Ref: 'AWS::Region' }, '.amazonaws.com']],
          },
          'kms:EncryptionContext:PARAMETER_ARN': arns,
        },
      },
    },
  ];
};
