"""``DynamicPrompt``: the prompt plus the ephemeral nodes added by node expansion (spec 5.6)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.graph_utils import is_link
from executor.prompt import Prompt


class DynamicPrompt:
    """The running graph: the original prompt and ephemeral nodes (exposed to nodes as ``DYNPROMPT``)."""

    def __init__(self, original: Prompt) -> None:
        self.original = original
        self._ephemeral: dict[str, dict[str, Any]] = {}
        self._parents: dict[str, str] = {}
        self._display: dict[str, str] = {}
        self._links: dict[str, list[tuple[str, str, int]]] = {}

    def get_node(self, node_id: str) -> dict[str, Any]:
        """Return the API-format dict of ``node_id`` (original or ephemeral)."""
        node = self._ephemeral.get(node_id)
        if node is None:
            node = self.original.get(node_id)
        if node is None:
            raise KeyError(f"Node '#{node_id}' is not in this prompt (nor among its expanded nodes)")
        return node

    def links(self, node_id: str) -> list[tuple[str, str, int]]:
        """Return ``[(input name, producer id, output index)]`` of ``node_id``'s links (memoised)."""
        found = self._links.get(node_id)
        if found is None:
            found = [(name, value[0], int(value[1])) for name, value in self.get_node(node_id)["inputs"].items()
                     if is_link(value)]
            self._links[node_id] = found
        return found

    def has_node(self, node_id: str) -> bool:
        """Return whether ``node_id`` is an original or ephemeral node."""
        return node_id in self.original or node_id in self._ephemeral

    def add_ephemeral_node(self, node_id: str, node: Mapping[str, Any], parent_id: str, display_id: str) -> None:
        """Add a node created by expanding ``parent_id``."""
        self._ephemeral[node_id] = dict(node)
        self._parents[node_id] = parent_id
        self._display[node_id] = display_id

    def is_ephemeral(self, node_id: str) -> bool:
        """Return whether ``node_id`` was added by expansion."""
        return node_id in self._ephemeral

    def get_parent_node_id(self, node_id: str) -> str | None:
        """Return the node that expanded into ``node_id`` (None for original nodes)."""
        return self._parents.get(node_id)

    def get_real_node_id(self, node_id: str) -> str:
        """Return the top-level (original) ancestor of ``node_id``."""
        while node_id in self._parents:
            node_id = self._parents[node_id]
        return node_id

    def get_display_node_id(self, node_id: str) -> str:
        """Return the id events show for ``node_id`` (the visible node)."""
        return self._display.get(node_id, node_id)

    def all_node_ids(self) -> list[str]:
        """Return every node id, original first."""
        return [*self.original, *self._ephemeral]

    def get_original_prompt(self) -> Prompt:
        """Return the prompt as queued."""
        return self.original


def hidden_value(kind: str, node_id: str, dynprompt: DynamicPrompt, extra_data: Mapping[str, Any]) -> Any:
    """Return the value of a hidden input of ``kind`` for ``node_id`` (spec 5.3)."""
    if kind == "PROMPT":
        return dynprompt.original
    if kind == "DYNPROMPT":
        return dynprompt
    if kind == "EXTRA_PNGINFO":
        return extra_data.get("extra_pnginfo")
    if kind == "UNIQUE_ID":
        return node_id
    if kind == "AUTH_TOKEN_COMFY_ORG":
        return extra_data.get("auth_token_comfy_org")
    if kind == "API_KEY_COMFY_ORG":
        return extra_data.get("api_key_comfy_org")
    return None
