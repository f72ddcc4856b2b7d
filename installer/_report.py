"""What detection found: findings grouped in sections, each explaining itself."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Status = Literal["ok", "warning", "error", "info"]
# JSON-able: str, int, float, bool, None, and lists/dicts of those
Value = Any


@dataclass(frozen=True)
class Finding:
    name: str
    value: Value
    status: Status
    detail: str


@dataclass
class Report:
    """One list of findings per section, in the order a person would read them."""

    system: list[Finding] = field(default_factory=list)
    engine: list[Finding] = field(default_factory=list)
    init: list[Finding] = field(default_factory=list)
    accelerators: list[Finding] = field(default_factory=list)
    storage: list[Finding] = field(default_factory=list)
    database: list[Finding] = field(default_factory=list)
    installation: list[Finding] = field(default_factory=list)

    def sections(self) -> dict[str, list[Finding]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def get(self, section: str, name: str) -> Finding | None:
        return next((f for f in self.sections()[section] if f.name == name), None)

    def value(self, section: str, name: str, default: Any = None) -> Any:
        finding = self.get(section, name)
        return default if finding is None else finding.value

    def to_dict(self) -> dict[str, Any]:
        return {name: [asdict(f) for f in items] for name, items in self.sections().items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(**{name: [Finding(**f) for f in items] for name, items in data.items()})
