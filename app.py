"""evalboard: the app's entry. Page config, navigation by workflow step, shared sidebar."""

import streamlit as st

from ui import navigation, sidebar
from ui.state import get_store

st.set_page_config(page_title="evalboard", page_icon=":material/fact_check:", layout="wide")

store = get_store()
page = st.navigation(navigation.build(), position="sidebar")
sidebar.render(store)
page.run()
