"""Model endpoints: which model a run talks to, the embedded llama.cpp server, token counts.

The method (`nodes/`, `graph/`) uses this package only through the names exported here; the
modules behind them (`settings`, `embedded`, `tokens`, `traits`) are for the applications.
"""

from endpoints.settings import Endpoint, default_endpoint, endpoint_api_key
from endpoints.tokens import count_message_tokens, count_tokens
from endpoints.traits import ModelTraits, model_traits

__all__ = [
    "Endpoint",
    "ModelTraits",
    "count_message_tokens",
    "count_tokens",
    "default_endpoint",
    "endpoint_api_key",
    "model_traits",
]
