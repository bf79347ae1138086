"""Outputs are real H.264 MP4s of the right length, showing the input, the same every time."""

from __future__ import annotations

import base64
import io

import av
import pytest

from mockserver import MockServer
from mockserver.video import RenderSpec, fit, render_mp4
from tests.mockserver.mock_support import T2V, Api, MakeMock, i2v, image_bytes


async def upload(api: Api, data: bytes, name: str = "in.png") -> str:
    _, reply, _ = await api.call(
        "POST", "/api/v3/media/uploads", json={"filename": name, "size": len(data)}
    )
    ticket = reply["data"]
    assert isinstance(ticket, dict)
    async with api.session.put(ticket["upload"]["url"], data=data) as response:
        assert response.status == 200
    return str(ticket["download_url"])


async def render(api: Api, mock: MockServer, body: dict[str, object], model: str = "") -> bytes:
    task_id = await api.submit(body, *([model] if model else []))
    mock.complete(task_id)
    (url,) = (await api.result(task_id))["outputs"]  # type: ignore[misc]
    async with api.session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/mp4"
        return await response.read()


def frames(mp4: bytes) -> tuple[av.VideoStream, list[av.VideoFrame], float]:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(video=0))
        assert container.duration is not None
        return stream, decoded, container.duration / av.time_base


def rgb(frame: av.VideoFrame, width: int, height: int) -> bytes:
    """Return the frame's RGB bytes at width x height, without row padding."""
    plane = frame.reformat(width, height, "rgb24").planes[0]
    data = bytes(plane)
    return b"".join(
        data[y * plane.line_size : y * plane.line_size + 3 * width] for y in range(height)
    )


def difference(a: av.VideoFrame, b: av.VideoFrame) -> float:
    """Mean absolute difference per RGB byte (0 = identical, 255 = opposite)."""
    pa, pb = rgb(a, a.width, a.height), rgb(b, a.width, a.height)
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


def decode_image(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0))


@pytest.mark.parametrize("duration", [5, 10])
async def test_output_is_h264_yuv420p_lasting_exactly_the_duration(
    api: Api, mock: MockServer, duration: int
) -> None:
    """The MP4 decodes with PyAV: H.264, yuv420p, 24 fps, duration x fps frames."""
    mp4 = await render(api, mock, i2v(duration))
    stream, decoded, seconds = frames(mp4)
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert stream.average_rate == 24
    assert seconds == duration
    assert len(decoded) == duration * 24
    assert (decoded[0].width, decoded[0].height) == (640, 360)


async def test_first_frame_is_the_uploaded_image_and_it_fades_to_the_last(
    api: Api, mock: MockServer
) -> None:
    """With image and last_image uploaded: frame 0 shows the first, the last frame the last."""
    red, blue = image_bytes(480, 320, (220, 30, 30)), image_bytes(480, 320, (20, 40, 230))
    first_url, last_url = await upload(api, red), await upload(api, blue, "b.png")
    body = i2v(4, image=first_url, last_image=last_url)
    _, decoded, seconds = frames(await render(api, mock, body))
    assert seconds == 4
    assert (decoded[0].width, decoded[0].height) == (480, 320)
    assert difference(decoded[0], decode_image(red)) < 4
    assert difference(decoded[-1], decode_image(blue)) < 4
    # The fade ends by 85 % of the video, whenever it starts.
    assert difference(decoded[len(decoded) * 7 // 8], decode_image(red)) > 20


async def test_data_uri_images_are_decoded(api: Api, mock: MockServer) -> None:
    """A base64 data: URI is the first frame too; a large image is scaled to 640 px."""
    green = image_bytes(960, 720, (30, 200, 30), codec="mjpeg")
    uri = "data:image/jpeg;base64," + base64.b64encode(green).decode()
    _, decoded, _ = frames(await render(api, mock, i2v(image=uri)))
    assert (decoded[0].width, decoded[0].height) == (640, 480)
    assert difference(decoded[0], decode_image(green)) < 6


async def test_same_request_gives_the_same_bytes_even_from_another_server(
    api: Api, mock: MockServer, make_mock: MakeMock
) -> None:
    """A request's n-th twin renders the same on any server; its downloads are one file."""
    body = i2v(5, image="https://unreachable.example/x.png")
    first_id = await api.submit(body)
    second = await render(api, mock, body)  # take 2 of the same request
    mock.complete(first_id)
    (url,) = (await api.result(first_id))["outputs"]  # type: ignore[misc]
    downloads = []
    for _ in range(2):
        async with api.session.get(url) as response:
            downloads.append(await response.read())
    other = await make_mock()
    other_api = Api(api.session, other)
    elsewhere = [await render(other_api, other, body) for _ in range(2)]
    assert downloads[0] == downloads[1] == elsewhere[0]
    assert second == elsewhere[1]
    assert second != downloads[0]
    assert mock.stats()["renders"]["count"] == 2
    assert [t["take"] for t in mock.tasks()] == [1, 2]


async def test_text_to_video_follows_its_aspect_ratio(api: Api, mock: MockServer) -> None:
    """9:16 text-to-video is 360 x 640."""
    body = {"prompt": "rain", "duration": 5, "aspect_ratio": "9:16"}
    _, decoded, _ = frames(await render(api, mock, body, T2V))
    assert (decoded[0].width, decoded[0].height) == (360, 640)


async def test_own_upload_url_that_does_not_exist_fails_the_task_with_1402(
    api: Api, mock: MockServer
) -> None:
    """An image URL on the mock's upload path with no upload behind it: failed, 1402."""
    url = f"{mock.base_url}/media/uploads/{'a' * 32}/gone.png"
    task_id = await api.submit(i2v(image=url))
    mock.advance(10)
    data = await api.result(task_id)
    assert (data["status"], data["code"]) == ("failed", 1402)


async def test_outputs_of_unfinished_tasks_are_404(api: Api) -> None:
    """The output URL only serves once the task completed."""
    task_id = await api.submit(i2v())
    async with api.session.get(f"{api.server.base_url}/media/outputs/{task_id}.mp4") as response:
        assert response.status == 404


def test_render_without_an_image_makes_a_placeholder_that_moves() -> None:
    """No decodable image: a deterministic placeholder, zooming in so frames change."""
    spec = RenderSpec(duration_s=3, fps=8, max_side_px=320, first_image=b"not an image")
    mp4 = render_mp4(spec)
    assert mp4 == render_mp4(spec)
    _, decoded, seconds = frames(mp4)
    assert (seconds, len(decoded), decoded[0].width, decoded[0].height) == (3, 24, 320, 180)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1920, 1080), (640, 360)), ((300, 301), (300, 300)), ((1080, 1920), (360, 640))],
)
def test_fit_keeps_the_aspect_ratio_with_even_sides(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    """fit() scales down to the longest side, never up, and rounds to even pixels."""
    assert fit(*size, 640) == expected


def test_shared_renders_key_a_video_by_its_frames_and_duration_alone():
    """``--share-renders`` (benchmarks): prompts and takes share one video; frames do not."""
    from decimal import Decimal  # noqa: PLC0415

    from mockserver.config import MockConfig  # noqa: PLC0415
    from mockserver.media import render_key  # noqa: PLC0415
    from mockserver.tasks import Task  # noqa: PLC0415

    def task(prompt: str, image: str, take: int = 1) -> Task:
        data = {"prompt": prompt, "image": image, "duration": 5}
        return Task(
            id="t", seq=0, model="m", input=data, cost_usd=Decimal(0), created_at=0.0, take=take
        )

    shared, own = MockConfig(share_renders=True), MockConfig()
    assert render_key(task("a", "x.png"), shared) == render_key(task("b", "x.png", 2), shared)
    assert render_key(task("a", "x.png"), shared) != render_key(task("a", "y.png"), shared)
    assert render_key(task("a", "x.png"), own) != render_key(task("b", "x.png"), own)


def test_a_flat_placeholder_has_no_checkerboard_and_makes_a_lighter_video() -> None:
    """``--flat-placeholders`` (benchmarks): a bare gradient, the same across each row, whose
    video is a fraction of the checkered one's; the ends still follow the same motion."""
    spec = RenderSpec(
        duration_s=2, fps=10, max_side_px=320, first_image=None, placeholder_seed="u", take=1
    )
    flat = RenderSpec(
        duration_s=2, fps=10, max_side_px=320, first_image=None, placeholder_seed="u", checker=False
    )
    checkered, bare = render_mp4(spec), render_mp4(flat)
    assert len(bare) * 2 < len(checkered)
    first_rows = []
    for mp4 in (checkered, bare):
        with av.open(io.BytesIO(mp4)) as container:
            first = next(container.decode(video=0)).to_ndarray(format="gray")
        first_rows.append(first[first.shape[0] // 2])
    assert int(first_rows[0].max()) - int(first_rows[0].min()) >= 32  # the checkerboard
    assert int(first_rows[1].max()) - int(first_rows[1].min()) <= 2  # a gradient over rows only


def test_flat_placeholders_are_part_of_the_render_key():
    """A state folder rendered checkered never serves its videos to a flat mock, or back."""
    from decimal import Decimal  # noqa: PLC0415

    from mockserver.config import MockConfig  # noqa: PLC0415
    from mockserver.media import render_key  # noqa: PLC0415
    from mockserver.tasks import Task  # noqa: PLC0415

    data = {"prompt": "p", "image": "x.png", "duration": 5}
    task = Task(id="t", seq=0, model="m", input=data, cost_usd=Decimal(0), created_at=0.0)
    for shared in (False, True):
        plain = MockConfig(share_renders=shared)
        flat = MockConfig(share_renders=shared, flat_placeholders=True)
        assert render_key(task, plain) != render_key(task, flat)
