"""User classes for tests/py/pickle_values.py (the `json/` view's tests,
tests/fs_json_view.rs): a module of their own, so that a pickle names them
`pickle_classes.X` (as an application's own module), never `__main__.X`.

Nothing here is imported by the reader under test: the mount renders the
pickles without importing anything; only the Python that writes the cache
(and computes what the rendering must be) imports this.
"""
import collections
import dataclasses
import datetime
import enum

import pydantic


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Mood(str, enum.Enum):
    CALM = 'calm'
    STORMY = 'stormy'


class Inner(pydantic.BaseModel):
    name: str
    when: datetime.datetime
    tags: list[str] = []


class Outer(pydantic.BaseModel):
    """A pydantic v2 model nesting another, with extra fields allowed and a
    private attribute (all three parts of pydantic's pickled state)."""

    model_config = pydantic.ConfigDict(extra='allow')

    id: int
    inner: Inner
    note: str
    ratio: float
    _secret: str = pydantic.PrivateAttr(default='hidden')


class Registry:
    """A class inside a class: its qualname has a dot (`Registry.Entry`)."""

    class Entry(pydantic.BaseModel):
        key: str
        size: int
        mood: Mood


@dataclasses.dataclass
class Job:
    name: str
    priority: int
    created: datetime.date
    labels: list
    color: Color


Point = collections.namedtuple('Point', ['x', 'y', 'label'])
