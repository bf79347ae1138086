"""A storyboard of the old form (no `model`) means exactly what it meant before the family.

Pinned before the Kling family was added: the fingerprints of specs/demo.toml, specs/takes.toml
and specs/chain.toml (by unit key), and what the first take of the demo sends. A change to
any of them would re-render (and re-pay for) every shot a user already has.
"""

from __future__ import annotations

from kling_pipe import load
from kling_pipe._files import sha256_file
from kling_pipe._shotlist.fingerprint import fingerprint_units

PINNED = {
    "demo.toml": {
        "puddle": "04d23519f332d9ee5cc8eb4ef72d8c319bfca94d1e1a205e42dcd1c17871bf52",
        "gutter": "09160f9d0d89647628d3c8995ac1e9e94271cb29e6ea4c230dd357e98b5aec7d",
        "street": "5f78b37da8b9ce24c72b2c79ac90592cfa123c0e90153fd75b30d8bb6329f357",
        "river": "1211fd916a0921560e70f9947d77a419d67588f2b4e5e017a84dc28a2c15e2af",
        "open-sea": "851e54bd24b770db67656c74c8106f835af4ffa4afd2bf52b8a3619bc2ac541c",
        "dusk": "89d83b36bec9d3c4cf7b3e87465e1e9483cedf89b8b4afa26d3eaa8295588cc4",
    },
    "takes.toml": {
        "river": "6f8c7599fe7bef6c21f913e5ebaef428b10c88300215e9692e82808efdf1a219",
        "river#2": "c991f4b70b0eddcc5db4e24c69ec39220ea9c04a11bf0e985ac05c47d8f4a525",
        "river#3": "edd499a3708b435c9ee40e3a2d0f3c1d38ac2c88803441bcccf2b22179ea810d",
        "sea": "ee18ebb3535d9b33ce17bac2e695b8cc440d2512d053f4cf7c1a89ceb4a9f89f",
    },
    "chain.toml": {
        "a-start": "a21d283091b113f4892d162fdd5c86d14fde73f087c1c2e7abf721a08ce83cf2",
        "b-continue": "2139fb5f54b1c9f69e571c55f02a2efe96594d1d3b5a861d8a54b989188568f8",
        "c-reverse": "c83333b8d1558345b3e7204b8a2c01ae8280689c2152e005a81b0cabb46bf61a",
    },
    "keyframes.toml": {
        "short-transition": "e2f36432545c734042902c04e45f6b862d30972690dfd78b8b1f01dd92d6d5ab",
        "long-transition": "e4b0cbf00751afec311f1d149fb13d8a04710a00bd01f987946f20fea172e10d",
        "hold": "1f1d4df464ef5879cae35818a3c3c017cacda9f8a0e32a74c496dc668b82c0be",
    },
}


def test_old_storyboards_fingerprint_exactly_as_before(specs):
    for name, pinned in PINNED.items():
        shotlist = load(specs / name)
        assert fingerprint_units(shotlist, sha256_file).fingerprints == pinned, name


def _fp(tmp_path, frames, body: str) -> str:
    from kling_pipe import loads  # noqa: PLC0415

    text = (
        'version = 1\n[storyboard]\nname = "t"\n[[shots]]\nid = "a"\nprompt = "p"\n'
        f'image = "frames/puddle.png"\n{body}\n'
    )
    board = loads(text, source=tmp_path / "t.toml")
    return fingerprint_units(board, sha256_file).fingerprints["a"]


def test_the_model_named_either_way_or_left_out_as_the_default_fingerprints_alike(tmp_path, frames):
    plain = _fp(tmp_path, frames, "")
    assert _fp(tmp_path, frames, 'model = "kling-video-o1-std/image-to-video"') == plain
    assert _fp(tmp_path, frames, 'model = "kwaivgi/kling-video-o1-std/image-to-video"') == plain


def test_every_field_that_reaches_the_request_changes_the_fingerprint(tmp_path, frames):
    v3 = 'model = "kling-v3.0-std/image-to-video"\n'
    seen = {
        _fp(tmp_path, frames, ""),
        _fp(tmp_path, frames, 'model = "kling-v2.5-turbo-std/image-to-video"'),
        _fp(tmp_path, frames, v3),
        _fp(tmp_path, frames, v3 + "sound = true"),
        _fp(tmp_path, frames, v3 + "sound = false"),
        _fp(tmp_path, frames, v3 + "cfg_scale = 0.6"),
        _fp(tmp_path, frames, v3 + 'negative_prompt = "rain"'),
        _fp(tmp_path, frames, v3 + "duration = 12"),
        _fp(tmp_path, frames, v3 + 'last_image = "frames/sea.jpg"'),
    }
    assert len(seen) == 9
    # A number is covered by its value, not by how it was written.
    assert _fp(tmp_path, frames, v3 + "cfg_scale = 0.60") == _fp(
        tmp_path, frames, v3 + "cfg_scale = 0.6"
    )
