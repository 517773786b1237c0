"""The floor: a functions-framework function that imports nothing, answers a constant.

For comparison only (bench/coldstart.py runs it beside the tutorial's handler and
ours): whatever it costs -- interpreter start, functions-framework, gunicorn and
Flask per request -- no handler served by this framework can go below it. It
never reads the request body (gunicorn discards what is left before the next
request on the connection), so its figures hold no JSON decoding at all.
"""

# The bench checks this exact body on every answer it parses.
ANSWER = '{"noop": true}'


def predict(request: object) -> tuple[str, int, dict[str, str]]:
    """Answer every request with the same JSON 200, whatever it asked."""
    return ANSWER, 200, {"Content-Type": "application/json"}
