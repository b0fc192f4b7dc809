"""Equality and repr by named fields, as a dataclass generates them.

Without loading `dataclasses`, which alone costs `import deltaprop` about a millisecond.
"""

from __future__ import annotations


class ComparedByFields:
    """Base of classes compared (``==``) and shown (``repr``) by their fields.

    The fields are the attributes ``_FIELDS`` names, in that order. Instances are
    unhashable unless the subclass defines ``__hash__``.
    """

    _FIELDS: tuple[str, ...] = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(self._FIELDS, self._values()))
        return f"{type(self).__qualname__}({fields})"
