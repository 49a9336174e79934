"""rtsps:// through trio's TLS against the scripted server wrapped in TLS, with a certificate
authority made at test time (tests/rtsp/pki.py): verification on by default, `tls_verify=0` for
self-signed cameras, and reads that stay batched although TLS hands out a record at a time."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from collector.config import ConfigError, load_settings
from collector.errors import SourceEnded, SourceUnavailable
from collector.params import parse_collect
from collector.rtsp.opener import RtspOpener
from collector.rtsp.tls import TlsStream, context_trusting, default_context, verifies
from collector.server import make_opener_for
from tests.rtsp.fake_camera import FakeCamera, video_frames
from tests.rtsp.pki import Pki, make_pki
from tests.rtsp.test_protocol import CEILING, Sink, send


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def record(camera: FakeCamera, opener: RtspOpener, url: str | None = None,
                 options: dict[str, str] | None = None) -> tuple[Sink, BaseException]:
    """Run the opener against `camera` until it ends or fails; return what it got and why."""
    sink = Sink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises((SourceEnded, SourceUnavailable)) as info:
                await opener.run((url or camera.url).format(port=camera.port), options or {}, sink)
            nursery.cancel_scope.cancel()
    return sink, info.value


def tls_camera(pki: Pki, **kwargs: object) -> FakeCamera:
    return FakeCamera(tls=pki.server_context(), after_play=send(video_frames(5), then_close=True),
                      **kwargs)  # type: ignore[arg-type]


async def test_untrusted_certificate_is_a_clear_tls_error(pki: Pki):
    """By default the system's trust store decides: our test CA is not in it, so the handshake
    fails before any RTSP byte is sent, as reason `tls` with the cause and the option to set in
    the message, and the password nowhere."""
    camera = tls_camera(pki)
    _, error = await record(camera, RtspOpener(io_timeout_s=2.0),
                            url="rtsps://admin:hunter2@127.0.0.1:{port}/live")
    assert isinstance(error, SourceUnavailable) and error.reason == "tls"
    text = str(error)
    assert "certificate" in text and "tls_verify=0" in text
    assert "hunter2" not in text and "rtsps://***@127.0.0.1:" in text
    assert camera.requests == []


async def test_host_name_is_checked_too(pki: Pki):
    """A certificate from a trusted CA for another name (it names 127.0.0.1, we asked for
    localhost) is refused: reason `tls`, the mismatch named."""
    camera = tls_camera(pki)
    opener = RtspOpener(io_timeout_s=2.0, ssl_context=pki.client_context())
    _, error = await record(camera, opener, url="rtsps://localhost:{port}/live")
    assert isinstance(error, SourceUnavailable) and error.reason == "tls"
    assert "localhost" in str(error) and "mismatch" in str(error).lower()
    assert camera.requests == []


@pytest.mark.parametrize("how", ["trusted CA", "COLLECTOR_RTSPS_CA_FILE", "tls_verify=0"])
async def test_records_over_tls(pki: Pki, how: str, tmp_path: Path):
    """With the CA trusted (given to the opener, or in the file `COLLECTOR_RTSPS_CA_FILE` names,
    as the service builds its opener), or with verification turned off for the source, the
    session runs over TLS like over TCP: Digest answered, every frame delivered, SourceEnded at
    the close."""
    camera = tls_camera(pki, digest=("admin", "pw"))
    if how == "trusted CA":
        opener, options = RtspOpener(io_timeout_s=2.0, ssl_context=pki.client_context()), {}
    elif how == "COLLECTOR_RTSPS_CA_FILE":
        settings = load_settings({"COLLECTOR_RTSPS_CA_FILE": str(pki.ca),
                                  "COLLECTOR_IO_TIMEOUT_S": "2"}, data_dir=tmp_path)
        opener, options = make_opener_for(settings)("rtsps://127.0.0.1/live"), {}
        assert isinstance(opener, RtspOpener)
    else:
        opener, options = RtspOpener(io_timeout_s=2.0), {"tls_verify": "0"}
    sink, error = await record(camera, opener, "rtsps://admin:pw@127.0.0.1:{port}/live", options)
    assert isinstance(error, SourceEnded), error
    assert camera.methods()[:5] == ["OPTIONS", "DESCRIBE", "DESCRIBE", "SETUP", "PLAY"]
    assert [p.pts // 3600 for p in sink.all] == [0, 1, 2, 3, 4]
    assert opener.statistics().sessions == 1


async def test_one_read_returns_every_record_it_brought(pki: Pki):
    """A camera writes a TLS record per RTP packet; OpenSSL decrypts one record per read. One
    `TlsStream.receive_some` still returns all 50 records that reached us (what one socket read
    returns on plain TCP), then the server's close as EOF, again and again."""
    client_end, server_end = trio.testing.memory_stream_pair()
    server = trio.SSLStream(server_end, pki.server_context(), server_side=True)
    client = TlsStream(client_end, pki.client_context(), "127.0.0.1", 256 * 1024)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            await client.do_handshake()
        for n in range(50):
            await server.send_all(bytes([n]) * 1400)
        await server.aclose()  # close_notify, after the records
        data = await client.receive_some(256 * 1024)
        assert len(data) == 50 * 1400 and data[-1400:] == bytes([49]) * 1400
        assert await client.receive_some(256 * 1024) == b""
        assert await client.receive_some(256 * 1024) == b""
        await client.aclose()


async def test_plain_sslstream_would_return_one_record(pki: Pki):
    """Why TlsStream exists: the same 50 records through trio.SSLStream alone come out one per
    receive_some."""
    client_end, server_end = trio.testing.memory_stream_pair()
    server = trio.SSLStream(server_end, pki.server_context(), server_side=True)
    client = trio.SSLStream(client_end, pki.client_context(), server_hostname="127.0.0.1")
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            await client.do_handshake()
        for n in range(50):
            await server.send_all(bytes([n]) * 1400)
        assert len(await client.receive_some(256 * 1024)) == 1400


def test_tls_verify_option_is_validated_and_reaches_the_opener(tmp_path: Path):
    """`tls_verify` is an allowed source option (0 or 1, as for FFmpeg); it arrives as the
    string the opener reads, and only 0 turns verification off. rtsps:// goes to the native
    client, not to PyAV."""
    settings = load_settings({}, data_dir=tmp_path)
    body = {"streams": [{"url": "rtsps://cam/x", "options": {"tls_verify": 0}}]}
    (source,) = parse_collect(body, settings, {}).sources
    assert source.options == {"tls_verify": "0"}
    assert not verifies(source.options)
    assert verifies({}) and verifies({"tls_verify": "1"})
    pick = make_opener_for(settings)
    assert isinstance(pick("rtsps://cam/x"), RtspOpener)
    assert isinstance(pick("rtsp://cam/x"), RtspOpener)


def test_default_context_verifies():
    """Without a context of its own the opener checks certificates and host names (against the
    system's trust store, loaded once for all openers)."""
    assert RtspOpener().ssl_context is None
    context = default_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert default_context() is context


async def test_a_plain_rtsp_server_times_out_in_the_handshake():
    """rtsps:// to a server that speaks plain RTSP: it waits for a request, we for its TLS hello;
    `timeout` after io_timeout_s, saying it was the handshake."""
    camera = FakeCamera()
    start = trio.current_time()
    _, error = await record(camera, RtspOpener(io_timeout_s=0.5), "rtsps://127.0.0.1:{port}/x")
    assert isinstance(error, SourceUnavailable) and error.reason == "timeout"
    assert "timed out in the TLS handshake with rtsps://127.0.0.1:" in str(error)
    assert 0.5 <= trio.current_time() - start < 3


def test_a_ca_file_that_cannot_be_loaded_stops_the_service_at_start(tmp_path: Path, monkeypatch,
                                                                     capsys):
    """A missing file, or one that holds no certificate, is a configuration error (exit 2) that
    names the variable and the file, before anything is made or served."""
    from collector.__main__ import main

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for path in (tmp_path / "missing.pem", junk):
        monkeypatch.setenv("COLLECTOR_RTSPS_CA_FILE", str(path))
        monkeypatch.setenv("COLLECTOR_DATA_DIR", str(tmp_path / "data"))
        assert main([]) == 2
        err = capsys.readouterr().err
        assert "configuration error: COLLECTOR_RTSPS_CA_FILE=" in err and str(path) in err
    assert not (tmp_path / "data").exists()
    with pytest.raises(ConfigError):
        context_trusting(str(junk))
