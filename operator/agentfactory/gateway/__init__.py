"""The model gateway: holds the model key, meters every token per attempt on the wire and
enforces the budget there (`server.py`), from signed attempt grants (`grants.py`) and a
ledger (`ledger.py`)."""
