"""evalboard: the app's entry. Page config, navigation by workflow step, shared sidebar."""

import streamlit as st

from ui import auth, navigation, sidebar
from ui.state import get_store

st.set_page_config(page_title="evalboard", page_icon=":material/fact_check:", layout="wide")

# With [auth] configured, only allowed, logged-in users get past this line (ui/auth.py).
auth.gate()
store = get_store()
page = st.navigation(navigation.build(), position="sidebar")
sidebar.render(store)
page.run()
