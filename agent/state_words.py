"""The words for an account's credential state (``agent.storage.state.state_word``), in the
default order of the account list. Here, with no import, so that ``channel-agent status``
can offer them without loading the agent."""

STATES = ("invalid", "unverified", "pending", "valid")
