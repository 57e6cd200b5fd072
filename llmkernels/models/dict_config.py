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

    def check_types(self) -> None:
        """Each field holds a value of its annotated type (a hand-edited or crafted JSON file can hold
        anything): refused here with the field's name rather than failing far away."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            allowed = [a.strip() for a in str(field.type).split("|")]
            if not any(_is_a(value, a) for a in allowed):
                raise self.unknown_fields_error(
                    f"{type(self).__name__}.{field.name} must be {' or '.join(allowed)}; got {value!r} ({type(value).__name__})"
                )


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "dict": dict}


def _is_a(value, annotation: str) -> bool:
    if annotation == "None":
        return value is None
    if annotation not in _TYPES:
        return True  # a type this check does not know: left to the config's own validation
    return isinstance(value, _TYPES[annotation]) and (annotation == "bool" or not isinstance(value, bool))


def is_positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0
