"""The seed tutorial's app.py, ported to a functions-framework entry point.

For comparison only (bench/coldstart.py runs it next to function/main.py under
the same functions-framework); it is not part of the served function. The body is
the tutorial's, unchanged: the pickle is loaded eagerly at import and `predict`
does no validation. The only changes are the ones the port forces: the model path
comes from SEED_MODEL_PATH (default: the tutorial's relative file name) and the
Flask route becomes `@functions_framework.http`, which answers every path.
"""

import os
import pickle

import flask
import functions_framework
import numpy as np
from flask import jsonify

# Load the saved model, eagerly, as the tutorial does.
with open(os.environ.get("SEED_MODEL_PATH", "random_forest_model.pkl"), "rb") as file:
    model = pickle.load(file)


@functions_framework.http
def predict(request: flask.Request) -> flask.Response:
    """The tutorial's /predict handler, verbatim."""
    data = request.get_json()
    features = np.array(data["features"]).reshape(1, -1)
    prediction = model.predict(features)
    return jsonify({"prediction": int(prediction[0])})
