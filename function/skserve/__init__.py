"""skserve: serve a published scikit-learn model from a serverless HTTP function."""
