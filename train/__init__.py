"""`python -m train`: fit, publish, list and promote models.

The trainer imports the serving package itself (storage, manifest, runtimes),
never a copy: `pip install -e .` installs both from this repository.
"""
