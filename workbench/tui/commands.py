"""Command palette (Ctrl+P) entries: one per action that is available where the user is."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ActionsProvider(Provider):
    """Offer every binding with an id of the screen the palette was opened on.

    The entries come from `Screen.active_bindings`, so they follow the
    screen's `check_action`: an action that is not available (cancel with no
    search running) is not offered. The key is shown beside each entry.
    """

    def _entries(self) -> list[tuple[str, str, object]]:
        screen = self.screen
        app = self.app
        entries: dict[str, tuple[str, str, object]] = {}
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.id or binding.system or not active.enabled or binding.id in entries:
                continue
            title = binding.tooltip or binding.description or binding.action
            key_display = app.get_key_display(binding)
            callback = partial(app.run_action, binding.action, active.node)
            entries[binding.id] = (title, f"{key_display} · {binding.id}", callback)
        return sorted(entries.values(), key=lambda entry: entry[0])

    async def discover(self) -> Hits:
        for title, help_text, callback in self._entries():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
