"""A native RTSP client on trio: RTSP/1.0 over TCP or TLS, interleaved RTP made into access units.

The protocol logic is free of I/O (hypercorn's split): `wire` frames bytes into RTSP messages and
interleaved packets, `sdp` and `auth` parse and answer what the server says, `redirects` decides
where a 3xx may take us, `rtp` checks sequence numbers and extends timestamps, `nal_units` (with
`h264`, `h265`), `aac` and `g711` turn RTP packets into access units, `tracks` maps SDP media to
depacketizers and `StreamInfo`s (decoding times for B-frames, a new description when parameter
sets change), whose PyAV templates come from `templates`. Only `client` (one
connection), `tls` (trio's TLS under it, for rtsps://), `session` (the set-up round trips) and
`opener` (the `Opener` a camera runs: the read loop, timeouts, redirects, error mapping) do
network I/O.
"""
