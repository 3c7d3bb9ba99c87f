"""Settings: the Langfuse and LLM connections, where each value comes from, and a test of each.

Values typed here hold for this browser session only (st.session_state): they are never written
to the database, exports or logs, and keys are only ever shown masked.
"""

from urllib.parse import urlsplit, urlunsplit

import streamlit as st

from integrations.langfuse import LangfuseConfigError, test_connection
from integrations.llm import LLMCallError, LLMClient, LLMNotConfigured, LLMSettings
from ui import langfuse as ui_langfuse
from ui.llm import SESSION_KEY as LLM_SESSION_KEY
from ui.llm import llm_disabled_reason, llm_settings, streamlit_secrets

LF_INPUTS = {"public_key": "settings.lf_public_key", "secret_key": "settings.lf_secret_key",
             "base_url": "settings.lf_base_url"}
LLM_INPUTS = {"base_url": "settings.llm_base_url", "api_key": "settings.llm_api_key", "model": "settings.llm_model"}
LLM_LABELS = {"base_url": "Base URL", "api_key": "API key", "model": "Model"}


def _redact(url: str | None) -> str:
    """The URL without any user:password part."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))
    return url


def _typed(inputs: dict[str, str]) -> dict[str, str]:
    return {name: st.session_state.get(key, "").strip() for name, key in inputs.items()
            if st.session_state.get(key, "").strip()}


def _clear(inputs: dict[str, str]) -> None:
    for key in inputs.values():
        st.session_state[key] = ""  # the typed secret does not linger in widget state


def _use_langfuse_values() -> None:
    """Form callback (runs before the page, so what the page shows below is already updated)."""
    typed = _typed(LF_INPUTS)
    _clear(LF_INPUTS)
    if not typed:
        st.session_state["settings.lf_problem"] = "Type at least one value first."
        return
    url = typed.get("base_url")
    if url and not url.startswith(("http://", "https://")):
        st.session_state["settings.lf_problem"] = f"Base URL must start with http:// or https://, got {url!r}."
        return
    st.session_state[ui_langfuse.SESSION_KEY] = {**ui_langfuse.session_values(), **typed}
    st.session_state["settings.lf_problem"] = None


def _use_llm_values() -> None:
    typed = _typed(LLM_INPUTS)
    _clear(LLM_INPUTS)
    if not typed:
        st.session_state["settings.llm_problem"] = "Type at least one value first."
        return
    merged = {**(st.session_state.get(LLM_SESSION_KEY) or {}), **typed}
    try:
        LLMSettings.resolve(merged, secrets=streamlit_secrets())
    except ValueError as exc:
        st.session_state["settings.llm_problem"] = str(exc)
        return
    st.session_state[LLM_SESSION_KEY] = merged
    st.session_state["settings.llm_problem"] = None


def _llm_sources() -> dict[str, tuple[str, str]]:
    """For base URL, API key and model: (shown value, where it comes from), highest layer first."""
    session = st.session_state.get(LLM_SESSION_KEY) or {}
    layers = [("this session", lambda: LLMSettings.resolve(session, env={}, secrets=None)),
              ("environment", lambda: LLMSettings.resolve({}, secrets=None)),
              ("secrets.toml [llm]", lambda: LLMSettings.resolve({}, env={}, secrets=streamlit_secrets()))]
    resolved = []
    for origin, make in layers:
        try:
            resolved.append((origin, make()))
        except ValueError:
            continue  # a malformed layer: llm_disabled_reason() says what is wrong
    out = {}
    for name in LLM_INPUTS:
        out[name] = ("", "not set")
        for origin, settings in resolved:
            value = getattr(settings, name)
            if value:
                shown = ui_langfuse.mask_secret(value) if name == "api_key" else _redact(value) if name == "base_url" else value
                out[name] = (shown, origin)
                break
    return out


def _show_sources(labels: dict[str, str], sources: dict[str, tuple[str, str]]) -> None:
    lines = [f"- **{labels[name]}**: " + (f"`{value}` from {origin}" if value else "not set")
             for name, (value, origin) in sources.items()]
    st.markdown("\n".join(lines))


st.title("Settings")
st.caption("Connections to Langfuse and to an LLM. Values typed here hold for this browser session only: "
           "they are not saved in the database, exports or logs. For settings that last, use environment "
           "variables or `.streamlit/secrets.toml` (see `.streamlit/secrets.toml.example`). Session values "
           "win over the environment, which wins over secrets.toml.")

# ---------------------------------------------------------------------------------------- Langfuse
st.subheader("Langfuse")
_show_sources(ui_langfuse.LABELS, ui_langfuse.setting_sources())
lf_reason = ui_langfuse.langfuse_disabled_reason()
if lf_reason:
    st.info(lf_reason)

with st.form("settings.lf_form"):
    st.markdown("**Keys for this session only**")
    c1, c2, c3 = st.columns(3)
    c1.text_input("Public key", key=LF_INPUTS["public_key"], placeholder="pk-lf-...")
    c2.text_input("Secret key", key=LF_INPUTS["secret_key"], type="password", placeholder="sk-lf-...")
    c3.text_input("Base URL", key=LF_INPUTS["base_url"], placeholder="https://cloud.langfuse.com")
    st.form_submit_button("Use for this session", on_click=_use_langfuse_values, key="settings.lf_use")
if st.session_state.get("settings.lf_problem"):
    st.error(st.session_state["settings.lf_problem"])

left, right = st.columns(2)
if left.button("Test connection", type="primary", key="settings.lf_test", disabled=lf_reason is not None,
               help=lf_reason or "Checks the server's health endpoint, then the keys."):
    try:
        settings = ui_langfuse.langfuse_settings()
    except LangfuseConfigError as exc:
        st.error(str(exc))
    else:
        with st.spinner(f"Connecting to {settings.base_url}..."):
            report = test_connection(settings)
        (st.success if report.ok else st.error)(report.message)
        if report.detail:
            st.caption(f"Details: {report.detail}")
if right.button("Forget this session's Langfuse values", key="settings.lf_forget",
                disabled=not ui_langfuse.session_values()):
    st.session_state.pop(ui_langfuse.SESSION_KEY, None)
    st.rerun()

# -------------------------------------------------------------------------------------------- LLM
st.divider()
st.subheader("LLM")
st.caption("Any OpenAI-compatible server: OpenAI, Azure, vLLM, Ollama, LiteLLM. Used to write queries, "
           "cluster notes and run judges; everything else works without one.")
_show_sources(LLM_LABELS, _llm_sources())
llm_reason = llm_disabled_reason()
if llm_reason:
    st.info(llm_reason)
else:
    current = llm_settings()
    st.success(f"Configured: model {current.model} at {_redact(current.base_url) or 'OpenAI (default URL)'}.")

with st.form("settings.llm_form"):
    st.markdown("**LLM for this session only**")
    c1, c2, c3 = st.columns(3)
    c1.text_input("Base URL", key=LLM_INPUTS["base_url"], placeholder="https://api.openai.com/v1")
    c2.text_input("API key", key=LLM_INPUTS["api_key"], type="password", placeholder="sk-...")
    c3.text_input("Model", key=LLM_INPUTS["model"], placeholder="gpt-4.1-mini")
    st.form_submit_button("Use for this session", on_click=_use_llm_values, key="settings.llm_use")
if st.session_state.get("settings.llm_problem"):
    st.error(st.session_state["settings.llm_problem"])

left, right = st.columns(2)
if left.button("Test LLM", type="primary", key="settings.llm_test", disabled=llm_reason is not None,
               help=llm_reason or "Sends one tiny chat completion."):
    try:
        # One request, no retries, a short timeout: a test should answer quickly either way.
        settings = llm_settings()
        client = LLMClient(settings.replace(max_retries=0, timeout=min(settings.timeout, 30.0)))
        with st.spinner(f"Asking {settings.model}..."):
            result = client.complete("Reply with the single word OK.", use_cache=False, feature="settings-test")
    except (LLMNotConfigured, LLMCallError, ValueError) as exc:
        st.error(f"The LLM test failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - anything else the SDK raises, in plain words
        st.error(f"The LLM test failed: {type(exc).__name__}: {exc}")
    else:
        tokens = (result.input_tokens or 0) + (result.output_tokens or 0)
        st.success(f"The model {result.model} answered: “{result.text.strip()[:200]}” ({tokens} tokens).")
if right.button("Forget this session's LLM values", key="settings.llm_forget",
                disabled=not st.session_state.get(LLM_SESSION_KEY)):
    st.session_state.pop(LLM_SESSION_KEY, None)
    st.rerun()
