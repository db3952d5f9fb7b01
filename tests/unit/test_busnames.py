"""Agent names map to valid, distinct-enough D-Bus names."""

from __future__ import annotations

from dbus_fast.validators import is_bus_name_valid
from hypothesis import given, settings
from hypothesis import strategies as st

from csp_core.busnames import AGENT_PREFIX, bus_name, guess_agent, is_agent_bus_name

AGENT_NAMES = st.from_regex(r"\A[a-z][a-z0-9_-]{0,31}\Z")


@settings(deadline=None)  # no timing in tests: a loaded machine must not fail it
@given(AGENT_NAMES)
def test_every_agent_name_is_a_valid_bus_name(name: str) -> None:
    bus = bus_name(name)
    assert is_bus_name_valid(bus), bus
    assert is_agent_bus_name(bus)
    assert bus.startswith(AGENT_PREFIX + ".")
    assert guess_agent(bus) == name.replace("-", "_")


def test_only_direct_children_of_the_prefix_are_agents() -> None:
    assert is_agent_bus_name("io.csp.Agent.claude")
    assert not is_agent_bus_name("io.csp.Agent")
    assert not is_agent_bus_name("io.csp.Agent.claude.extra")
    assert not is_agent_bus_name("io.csp.Agents.claude")
    assert not is_agent_bus_name("org.example.claude")
