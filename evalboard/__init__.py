"""evalboard core: models, store and one module per method. Never imports streamlit."""

__version__ = "0.1.0"
