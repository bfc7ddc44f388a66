"""The FastAPI demo service that reports the architecture it runs as."""
