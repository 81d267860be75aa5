"""Functions the Chaos Toolkit corpus (tests/ctk/corpus) calls as python providers and probe tolerances.

Chaos Toolkit and `chaos run` both import this module from PYTHONPATH=tests/ctk/modules; every function is
deterministic so the two journals can be compared value for value.
"""


def greet(name="world"):
    return "hello " + name


def number(amount=5):
    return amount


def values(a=None, b=None, c=None, d=None, e=None, f=None):
    """Its arguments back, to show how the experiment's YAML scalars were read."""
    return [a, b, c, d, e, f]


def json_text():
    return '{"service": {"replicas": [1, 2, 3], "state": "up"}}'


def add(a, b):
    return a + b


def from_configuration(key, configuration=None):
    return (configuration or {}).get(key)


def from_secrets(key, secrets=None):
    return (secrets or {}).get(key)


def fail(message="boom"):
    raise RuntimeError(message)


def status_is_200(value=None):
    """A probe tolerance: met when the probe's output is an HTTP answer with status 200."""
    return isinstance(value, dict) and value.get("status") == 200


def above(value=None, threshold=0):
    """A probe tolerance: met when the output is a number above `threshold`."""
    return isinstance(value, (int, float)) and value > threshold
