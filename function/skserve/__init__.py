"""skserve: serve a published scikit-learn model from a serverless HTTP function."""

# The one version number: the package's (pyproject.toml reads it from here),
# the OpenAPI document's and the V2 server metadata's (tests hold them equal).
__version__ = "0.1.0"
