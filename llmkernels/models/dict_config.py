"""JSON-ready dict round trip for the dataclass configs (the model's and the training run's)."""

from __future__ import annotations

import dataclasses


class DictConfig:
    """``to_dict()`` and ``from_dict()`` for a dataclass; ``from_dict`` refuses unknown fields, so a
    typo or a file from another version fails loudly instead of being dropped."""

    unknown_fields_error: type[Exception] = ValueError

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise cls.unknown_fields_error(f"{cls.__name__} has unknown fields {unknown}")
        return cls(**values)


def is_positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0
