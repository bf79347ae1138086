"""Read a shot-list file into a `ShotList`, or raise `ShotListError` listing every problem.

The one place that knows TOML and cattrs. Parsing keeps TOML floats as `Decimal` so that
`max_cost = 5.00` stays exactly five dollars (and prints as "5.00"). The parser is tomli,
the standard library's tomllib as a compiled wheel: a third of tomllib's time on a large
shot list (0.08 s against 0.27 s for 10,000 shots); it reads TOML 1.1, which only adds to
1.0. Validation runs first, on the raw document, so that every problem is reported with its
key path; the specs are then built from the normalized document (`_specs`, as the cattrs
converter would build them; cattrs is loaded only to write a shot list back, or to say
where a document validation let through went wrong). Nothing here raises anything but
`ShotListError` for bad input, whatever the bytes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import tomli

from kling_pipe._shotlist.images import check_image_file, measure_image
from kling_pipe._shotlist.specs import (
    ChainImage,
    Defaults,
    ImageRef,
    LocalImage,
    PromptPart,
    Shot,
    ShotList,
    Storyboard,
    UrlImage,
)
from kling_pipe._shotlist.validate import ImageCheck, validate_document
from kling_pipe.exceptions import Problem, ShotListError

if TYPE_CHECKING:
    import cattrs

#: A shot list is text a person writes; anything this large is a mistake, not a storyboard.
MAX_FILE_BYTES = 16 * 1024 * 1024

#: The byte-order mark, as text: some editors start UTF-8 files with it.
_BOM = "\ufeff"

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def make_converter() -> cattrs.Converter:
    """Build the converter between specs and TOML-shaped dicts.

    Unknown keys are refused (validation has already named them, with suggestions; this is
    the second line of defence). Unstructuring leaves out defaults, so a shot list written
    back has only what matters, and it structures again to an equal value.
    """
    import cattrs  # noqa: PLC0415 - see `converter`
    from cattrs.gen import make_dict_unstructure_fn, override  # noqa: PLC0415

    conv = cattrs.Converter(forbid_extra_keys=True, omit_if_default=True)

    def structure_image(value: Any, _: object) -> ImageRef:
        return _image(value)

    def unstructure_image(value: ImageRef) -> str | dict[str, str]:
        match value:
            case ChainImage(shot=shot, frame=frame):
                return {"shot": shot, "frame": frame}
            case UrlImage(url=url):
                return url
            case LocalImage(path=path):
                return path

    conv.register_structure_hook(ImageRef, structure_image)
    conv.register_structure_hook(ImageRef | None, _optional(structure_image))
    conv.register_unstructure_hook(ChainImage, unstructure_image)
    conv.register_unstructure_hook(UrlImage, unstructure_image)
    conv.register_unstructure_hook(LocalImage, unstructure_image)
    conv.register_structure_hook(Decimal, lambda v, _: Decimal(str(v)))
    conv.register_unstructure_hook(Decimal, lambda v: v)
    conv.register_unstructure_hook(
        ShotList,
        make_dict_unstructure_fn(
            ShotList,
            conv,
            _cattrs_omit_if_default=True,
            source=override(omit=True),
            warnings=override(omit=True),
        ),
    )
    return conv


def _optional(hook: Any) -> Any:
    def structure(value: Any, cls: object) -> Any:
        return None if value is None else hook(value, cls)

    return structure


@functools.cache
def converter() -> cattrs.Converter:
    """Return the one converter, built (and cattrs loaded) when first asked for.

    Loading a shot list builds its specs without it (`_specs`); writing one back, and
    telling where a document `_specs` could not build went wrong, use it.
    """
    return make_converter()


def unstructure(shotlist: ShotList) -> dict[str, Any]:
    """Return *shotlist* as the TOML-shaped dict it could have been loaded from."""
    result: dict[str, Any] = converter().unstructure(shotlist)
    return result


def _image(value: Any) -> ImageRef:
    """Build a frame from its TOML form: a chain table, an http(s) URL or a file path."""
    if isinstance(value, dict):
        return ChainImage(shot=value["shot"], frame=value["frame"])
    if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        return UrlImage(url=value)
    if isinstance(value, str):
        return LocalImage(path=value)
    raise TypeError(f"not an image reference: {value!r}")


#: The spec fields whose TOML form is not their value: frames, amounts, a multi-shot prompt.
#: Every other field of Storyboard, Defaults and Shot is a str, int or bool as TOML reads it
#: (tests/test_loader.py holds the specs to that, so a field of a new type is noticed).
_IMAGE_FIELDS: Final = ("image", "last_image")
_DECIMAL_FIELDS: Final = ("max_cost", "budget", "cfg_scale", "guidance_scale")


def _spec_fields(table: Mapping[str, Any]) -> dict[str, Any]:
    """Return a validated table's fields as the spec's `__init__` takes them."""
    fields = dict(table)
    for key in _IMAGE_FIELDS:
        if key in fields:
            fields[key] = _image(fields[key])
    for key in _DECIMAL_FIELDS:
        if key in fields:
            fields[key] = Decimal(str(fields[key]))  # as the converter's hook
    parts = fields.get("multi_prompt")
    if parts is not None:
        fields["multi_prompt"] = tuple(
            PromptPart(prompt=p["prompt"], duration=p["duration"]) for p in parts
        )
    return fields


def _specs(document: Mapping[str, Any]) -> ShotList:
    """Build the specs of a validated, normalized document, as the converter would.

    cattrs' generated functions would check again, field by field, what validation has
    checked, at nearly twice the cost, after loading cattrs and generating their code (0.02
    s of a command's start). A document validation let through that this cannot build (a
    bug) goes to the converter, which says where.
    """
    return ShotList(
        storyboard=Storyboard(**_spec_fields(document["storyboard"])),
        shots=tuple(Shot(**_spec_fields(table)) for table in document["shots"]),
        defaults=Defaults(**_spec_fields(document["defaults"])),
        version=document["version"],
    )


def structure(
    document: dict[str, Any],
    *,
    source: Path = Path("shotlist.toml"),
    check_image: ImageCheck | None = check_image_file,
) -> ShotList:
    """Validate a TOML-shaped dict and build the `ShotList`, or raise `ShotListError`.

    What may fail on the server though no rule stops it (a frame outside Kling's image
    limits, for a model whose page states none) is in `ShotList.warnings`. Image
    sizes are read only when images are checked (*check_image* is not None).
    """
    base_dir = source.parent
    validated = validate_document(
        document,
        base_dir=base_dir,
        check_image=check_image,
        measure_image=None if check_image is None else measure_image,
    )
    if validated.problems:
        raise ShotListError(str(source), validated.problems, warnings=validated.warnings)
    try:
        shotlist = _specs(validated.document)
    except Exception:  # noqa: BLE001 - validation should have caught it: let cattrs say where
        shotlist = _structure_by_converter(validated.document, source)
    return ShotList(
        storyboard=shotlist.storyboard,
        shots=shotlist.shots,
        defaults=shotlist.defaults,
        version=shotlist.version,
        source=source,
        warnings=validated.warnings,
    )


def _structure_by_converter(document: dict[str, Any], source: Path) -> ShotList:
    """Build the specs with the converter, or raise `ShotListError` naming where it failed."""
    import cattrs  # noqa: PLC0415 - see `converter`

    try:
        shotlist: ShotList = converter().structure(document, ShotList)
    except Exception as exc:  # validation should have caught it; still never a traceback
        problems = [
            Problem(path.removeprefix("$."), "invalid value")
            for path in cattrs.transform_error(exc, path="$")
        ]
        raise ShotListError(str(source), problems) from exc
    return shotlist


def loads(
    text: str,
    *,
    source: Path | str = Path("shotlist.toml"),
    check_image: ImageCheck | None = check_image_file,
) -> ShotList:
    """Parse shot-list TOML *text*; relative paths in it resolve against *source*'s folder.

    A byte-order mark at the start (Notepad and some Windows editors save UTF-8 with one)
    is not part of the text: TOML does not allow it, and the user never typed it.
    """
    source = Path(source)
    text = text.removeprefix(_BOM)
    with gc_paused():
        try:
            document = tomli.loads(text, parse_float=Decimal)
        except tomli.TOMLDecodeError as exc:
            raise ShotListError(str(source), [_toml_problem(exc)]) from None
        except RecursionError:
            problem = Problem("", "invalid TOML: nested too deeply to read")
            raise ShotListError(str(source), [problem]) from None
        return structure(document, source=source, check_image=check_image)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a shot list's values are built (then as it was).

    Reading a shot list makes a few objects per key and keeps nearly all of them: the
    collector, started by the count of new objects, would walk every object made so far
    over and over (a tenth of `validate`'s time on 10,000 shots) and find nothing to free,
    since documents, problems and specs hold no cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_bytes(
    data: bytes,
    *,
    source: Path | str = Path("shotlist.toml"),
    check_image: ImageCheck | None = check_image_file,
) -> ShotList:
    """Parse a shot list from raw bytes, which must be UTF-8 TOML."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = Problem(
            f"line {line}", f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        )
        raise ShotListError(str(source), [problem]) from None
    return loads(text, source=source, check_image=check_image)


def storyboard_path(path: Path) -> Path:
    """Return the storyboard file *path* names: a symlink's target, else *path* as given.

    The storyboard's identity is resolved here, once: every name of one file (``current.toml
    -> film.toml``) is one storyboard, whose relative paths, output folder and records all
    hang off the file itself. A target under the current folder stays relative when *path*
    was, so messages stay short.
    """
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if not path.is_absolute():
        with contextlib.suppress(ValueError, OSError):
            return real.relative_to(Path.cwd())
    return real


def load(
    path: str | os.PathLike[str],
    *,
    check_image: ImageCheck | None = check_image_file,
    records_only: bool = False,
) -> ShotList:
    """Read and validate the shot list at *path*, or raise `ShotListError`.

    A symlink is followed (`storyboard_path`): the shot list is the file it leads to.
    *records_only* is for the commands that read the records and never send an image
    (`status`, `report`, `cut`, `export`, `gc`, `pick`): a local image that is missing is
    then no error, since they fingerprint its shot from what the records say the image was
    (`kling_pipe._records.assessment.image_hashes`); an image that is there is checked as
    ever. `validate`, `plan` and `run` need every image.
    """
    if records_only and check_image is not None:
        check_image = _unless_missing(check_image)
    source = Path(path)
    try:
        with source.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ShotListError(str(source), [Problem("", "file not found")]) from None
    except IsADirectoryError:
        raise ShotListError(str(source), [Problem("", "is a folder, not a shot list")]) from None
    except OSError as exc:
        problem = Problem("", f"cannot read: {exc.strerror or exc}")
        raise ShotListError(str(source), [problem]) from None
    if len(data) > MAX_FILE_BYTES:
        problem = Problem("", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; not a shot list")
        raise ShotListError(str(source), [problem])
    return load_bytes(data, source=storyboard_path(source), check_image=check_image)


def _unless_missing(check: ImageCheck) -> ImageCheck:
    """Check an image only when it is there (`load`'s records-only mode)."""

    def checked(path: Path) -> str | None:
        return None if not path.exists() else check(path)

    return checked


def _toml_problem(exc: tomli.TOMLDecodeError) -> Problem:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match is None:
        return Problem("", f"invalid TOML: {message}")
    detail = message[: match.start()]
    return Problem(f"line {match[1]}, column {match[2]}", f"invalid TOML: {detail}")
