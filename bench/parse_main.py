"""The second floor: a functions-framework function that parses the JSON body
and answers a constant.

For comparison only (bench/coldstart.py runs it beside the no-op floor and
ours): where bench/noop_main.py never reads the body, this one reads and decodes
it with Flask's `request.get_json()` (as the tutorial's handler does), so its
figures hold what any JSON handler under this framework pays before it does any
work of its own. A body that is not JSON gets Flask's 400 (or 415 without the
JSON content type), never the constant.
"""

import flask
import functions_framework

# The bench checks this exact body on every answer it parses.
ANSWER = '{"parsed": true}'


@functions_framework.http
def predict(request: flask.Request) -> tuple[str, int, dict[str, str]]:
    """Parse the body as JSON, then answer the same 200 whatever it held."""
    request.get_json()
    return ANSWER, 200, {"Content-Type": "application/json"}
