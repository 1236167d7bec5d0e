#!/usr/bin/env python3
"""A tidewire client written from protocol.md alone (standard library only).

Run by tests/spec_client.rs against a real server: it performs the handshake,
creates a channel, subscribes from the earliest message, publishes a batch
with acknowledgements, reads the pushed records (checking every CRC), reads a
history page and triggers an error; then creates an instance, an API key, a
user and a channel there with Admin commands, and checks what that API key and
user may do. Then it checks, one function per section, the rules a client
relies on: the handshake, request ids, response order, names, payloads,
history, and last (after printing "waiting for shutdown", when the test stops
the server) the shutdown. It prints one line per check.
"""
import json
import socket
import struct
import sys
import zlib

OP_HELLO, OP_AUTH, OP_PING = 0x01, 0x02, 0x03
OP_PUBLISH, OP_SUBSCRIBE, OP_HISTORY, OP_FETCH = 0x10, 0x20, 0x30, 0x31
OP_EDIT, OP_DELETE, OP_MESSAGE, OP_LIVE = 0x11, 0x12, 0xB1, 0xE4
OP_CHANNEL_CREATE, OP_CHANNEL_GET, OP_CHANNEL_UPDATE, OP_ADMIN = 0x40, 0x41, 0x43, 0x50
OP_HELLO_OK, OP_AUTH_OK, OP_PONG = 0x81, 0x82, 0x83
OP_PUBLISH_ACK, OP_SUBSCRIBED, OP_HISTORY_PAGE = 0x90, 0xA0, 0xB0
OP_CHANNEL, OP_ADMIN_RESULT, OP_DELIVER, OP_ERROR = 0xC0, 0xC2, 0xE0, 0xFF
FLAG_ROOM = 1 << 3
E_MALFORMED_FRAME, E_UNSUPPORTED_VERSION, E_HELLO_REQUIRED = 1, 3, 4
E_BAD_REQUEST, E_CHANNEL_NOT_FOUND, E_ROOM_REQUIRED, E_INVALID_NAME = 6, 20, 22, 25
E_SHUTTING_DOWN = 42
E_AHEAD_OF_HEAD = 33
E_MESSAGE_NOT_FOUND, E_MESSAGE_DELETED = 24, 35


def s16(text):
    raw = text.encode()
    return struct.pack("<H", len(raw)) + raw


class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.next_id = 1
        self.pushes = []

    def send(self, opcode, body):
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(frame(opcode, rid, body))
        return rid

    def read_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("server closed the connection")
            out += chunk
        return out

    def read_frame(self):
        (length,) = struct.unpack("<I", self.read_exact(4))
        rest = self.read_exact(length)
        opcode, flags, reserved, rid = struct.unpack("<BBHI", rest[:8])
        assert flags == 0 and reserved == 0
        return opcode, rid, rest[8:]

    def reply(self, rid):
        """The response to request `rid`; pushes seen meanwhile are kept."""
        while True:
            opcode, got, body = self.read_frame()
            if got == 0:
                self.pushes.append((opcode, body))
                continue
            assert got == rid, (got, rid)
            if opcode == OP_ERROR:
                code, n = struct.unpack("<HH", body[:4])
                return opcode, {"code": code, "message": body[4 : 4 + n].decode()}
            return opcode, body


def frame(opcode, rid, body=b""):
    return struct.pack("<IBBHI", 8 + len(body), opcode, 0, 0, rid) + body


def hello_body(vmin=1, vmax=1):
    return struct.pack("<HH", vmin, vmax) + s16("spec-client.py")


def expect_error(c, code, rid):
    """The next frame is Error `code` for request `rid`; returns its message."""
    opcode, got, body = c.read_frame()
    assert opcode == OP_ERROR, (opcode, body)
    got_code, n = struct.unpack("<HH", body[:4])
    assert (got_code, got) == (code, rid), (got_code, got, body)
    return body[4 : 4 + n].decode()


def expect_closed(c):
    """The server closed the connection (after what was read so far)."""
    try:
        assert c.sock.recv(1) == b"", "the connection is still open"
    except ConnectionResetError:
        pass


def handshake_rules(addr, key):
    """Connection lifecycle 2 and 3, Framing (request_id 0)."""
    for opcode in (OP_PING, 0x7F, OP_AUTH):
        c = Conn(addr)  # anything but Hello first: HelloRequired, its rid, close
        c.sock.sendall(frame(opcode, 5, b"x"))
        expect_error(c, E_HELLO_REQUIRED, 5)
        expect_closed(c)
    c = Conn(addr)  # no common version: UnsupportedVersion, the Hello's rid, close
    c.sock.sendall(frame(OP_HELLO, 9, hello_body(3, 4)))
    expect_error(c, E_UNSUPPORTED_VERSION, 9)
    expect_closed(c)
    c = Conn(addr)  # a malformed Hello may be corrected; a second Hello may not
    c.sock.sendall(frame(OP_HELLO, 1, hello_body(3, 1)))
    expect_error(c, E_BAD_REQUEST, 1)
    c.next_id = 2
    op, _ = c.reply(c.send(OP_HELLO, hello_body()))
    assert op == OP_HELLO_OK
    op, err = c.reply(c.send(OP_HELLO, hello_body()))
    assert op == OP_ERROR and err["code"] == E_BAD_REQUEST, err
    op, body = c.reply(c.send(OP_PING, b"p"))
    assert op == OP_PONG and body == b"p", "Ping works before Auth"
    c, _, _ = connect(addr, key)  # request_id 0: MalformedFrame on rid 0, close
    c.sock.sendall(frame(OP_PING, 0, b"x"))
    expect_error(c, E_MALFORMED_FRAME, 0)
    expect_closed(c)
    print("handshake rules ok")


def publish_body(channel, ack, payloads, room=None, ctype=2):
    """A Publish body: `payloads` as messages of content type `ctype`."""
    msgs = b""
    for p in payloads:
        flags, fields = 0, b""
        if room is not None:
            flags, fields = FLAG_ROOM, bytes([len(room.encode())]) + room.encode()
        body = struct.pack("<BBH", 0, ctype, flags) + fields + p
        msgs += struct.pack("<I", len(body)) + body
    return s16(channel) + struct.pack("<BI", ack, len(payloads)) + msgs


def order_rules(addr, key):
    """Connection lifecycle 6: responses come back in request order, even
    when an early publish waits for a disk sync and later ones fail at once."""
    c, _, _ = connect(addr, key)
    c.reply(c.send(OP_CHANNEL_CREATE, json.dumps({"name": "ordered"}).encode()))
    c.sock.sendall(
        frame(OP_PUBLISH, 100, publish_body("ordered", 2, [b"durable"]))
        + frame(OP_PUBLISH, 101, publish_body("missing", 1, [b"x"]))
        + frame(OP_PUBLISH, 102, s16("ordered") + struct.pack("<BI", 1, 0))
        + frame(OP_PUBLISH, 103, publish_body("ordered", 0, [b"no ack"]))
        + frame(OP_PING, 104, b"last")
    )
    seen = []
    while len(seen) < 4:
        opcode, rid, body = c.read_frame()
        if rid == 0:
            continue
        seen.append((rid, opcode, struct.unpack("<H", body[:2])[0] if opcode == OP_ERROR else None))
    assert seen == [
        (100, OP_PUBLISH_ACK, None),
        (101, OP_ERROR, E_CHANNEL_NOT_FOUND),
        (102, OP_ERROR, E_BAD_REQUEST),
        (104, OP_PONG, None),
    ], seen
    print("response order ok")


def name_rules(addr, key):
    """Conventions: channel names, rooms, and length-first error codes."""
    c, _, _ = connect(addr, key)

    def code_of(opcode, body):
        op, got = c.reply(c.send(opcode, body))
        return got["code"] if op == OP_ERROR else op

    create = {"name": "Py_Mixed", "type": "separate_rooms"}
    op, body = c.reply(c.send(OP_CHANNEL_CREATE, json.dumps(create).encode()))
    assert op == OP_CHANNEL and json.loads(body)["name"] == "py_mixed", body
    assert code_of(OP_CHANNEL_GET, s16("PY_MIXED")) == OP_CHANNEL
    assert code_of(OP_PUBLISH, publish_body("pY_mIxEd", 1, [b"m"], room="Lobby")) == OP_PUBLISH_ACK
    hist = s16("Py_Mixed") + s16("LOBBY") + struct.pack("<BQQI", 0, 0, 0, 10)
    op, body = c.reply(c.send(OP_HISTORY, hist))
    assert op == OP_HISTORY_PAGE
    page = records(body[4:], struct.unpack("<I", body[:4])[0])
    assert [r["room"] for r in page] == ["lobby"], page
    for bad in ("", "a b", "caf\u00e9"):
        assert code_of(OP_CHANNEL_GET, s16(bad)) == E_INVALID_NAME, bad
        assert code_of(OP_CHANNEL_CREATE, json.dumps({"name": bad}).encode()) == E_INVALID_NAME
    long_name = "x" * 65
    assert code_of(OP_CHANNEL_GET, s16(long_name)) == E_BAD_REQUEST
    assert code_of(OP_CHANNEL_CREATE, json.dumps({"name": long_name}).encode()) == E_BAD_REQUEST
    sub = lambda room: struct.pack("<I", 1) + s16("py_mixed") + s16(room) + struct.pack("<BQ", 0, 0)
    assert code_of(OP_SUBSCRIBE, sub("a\nb")) == E_INVALID_NAME
    assert code_of(OP_SUBSCRIBE, sub("r" * 129)) == E_BAD_REQUEST
    assert code_of(OP_SUBSCRIBE, sub("")) == E_ROOM_REQUIRED
    assert code_of(OP_PUBLISH, publish_body("py_mixed", 1, [b"m"], room="a\x01")) == E_INVALID_NAME
    update = lambda fields: s16("PY_MIXED") + json.dumps(fields).encode()
    assert code_of(OP_CHANNEL_UPDATE, update({"name": "PY_MIXED", "type": "separate_rooms"})) == OP_CHANNEL
    assert code_of(OP_CHANNEL_UPDATE, update({"type": "default"})) == E_BAD_REQUEST
    assert code_of(OP_CHANNEL_UPDATE, update({"name": "other"})) == E_BAD_REQUEST
    print("names ok")


def payload_rules(addr, key):
    """Message body: a payload keeps the promise of its content type."""
    c, _, _ = connect(addr, key)
    c.reply(c.send(OP_CHANNEL_CREATE, json.dumps({"name": "typed"}).encode()))

    def publish(payloads, ctype):
        op, got = c.reply(c.send(OP_PUBLISH, publish_body("typed", 1, payloads, ctype=ctype)))
        return got["code"] if op == OP_ERROR else struct.unpack("<IQ", got[:12])

    assert publish([b'{"a": [1, "x"]}', b" 7 ", b"null"], 1) == (3, 1)
    assert publish(["h\u00e9".encode(), b""], 2) == (2, 4)
    assert publish([b"\xff\x00", b""], 0) == (2, 6)
    for payloads, ctype in (([b"{}", b'{"a":'], 1), ([b""], 1), ([b"ok", b"\xff"], 2)):
        assert publish(payloads, ctype) == E_BAD_REQUEST, (payloads, ctype)
    hist = s16("typed") + s16("") + struct.pack("<BQQI", 0, 0, 0, 100)
    op, body = c.reply(c.send(OP_HISTORY, hist))
    assert struct.unpack("<I", body[:4])[0] == 7, "a refused batch stores nothing"
    print("payloads ok")


def history_rules(addr, key):
    """History: the page cap, and whole-channel reads of separate rooms."""
    c, _, _ = connect(addr, key)
    create = {"name": "roomed", "type": "separate_rooms", "other_permissions": "subscribe"}
    c.reply(c.send(OP_CHANNEL_CREATE, json.dumps(create).encode()))
    for room in ("a", "b"):
        c.reply(c.send(OP_PUBLISH, publish_body("roomed", 1, [b"m"], room=room)))
    hist = lambda room, limit=10: s16("roomed") + s16(room) + struct.pack("<BQQI", 0, 0, 0, limit)
    op, body = c.reply(c.send(OP_HISTORY, hist("")))
    assert op == OP_HISTORY_PAGE, body
    page = records(body[4:], struct.unpack("<I", body[:4])[0])
    assert [(r["id"], r["room"]) for r in page] == [(2, "b"), (1, "a")], page
    op, err = c.reply(c.send(OP_HISTORY, hist("a", 1001)))
    assert op == OP_ERROR and err["code"] == E_BAD_REQUEST, err
    api = admin(c, {"op": "key.create"})
    user = admin(c, {"op": "user.create", "username": "reader"})
    u, kind, _ = connect(addr, api["key"], user["user_key"])
    assert kind == 2
    op, err = u.reply(u.send(OP_HISTORY, hist("")))
    assert op == OP_ERROR and err["code"] == E_ROOM_REQUIRED, err
    op, body = u.reply(u.send(OP_HISTORY, hist("A")))
    assert op == OP_HISTORY_PAGE and struct.unpack("<I", body[:4])[0] == 1
    print("history rules ok")


def delivery_rules(addr, key):
    """Subscribe: the optional options byte (bit 0: committed messages only),
    unknown option bits refused, and a start after an id beyond the head
    refused with AheadOfHead naming the head."""
    c, _, _ = connect(addr, key)
    c.reply(c.send(OP_CHANNEL_CREATE, json.dumps({"name": "ledger"}).encode()))
    sub = lambda sub_id, kind, value, options: (
        struct.pack("<I", sub_id) + s16("ledger") + s16("") + struct.pack("<BQB", kind, value, options)
    )
    op, body = c.reply(c.send(OP_SUBSCRIBE, sub(1, 0, 0, 0x01)))
    assert op == OP_SUBSCRIBED, body
    op, body = c.reply(c.send(OP_PUBLISH, publish_body("ledger", 2, [b"kept"])))
    assert op == OP_PUBLISH_ACK, body
    first_id = struct.unpack("<IQ", body[:12])[1]
    while not c.pushes:
        c.pushes.append(c.read_frame()[::2])
    opcode, body = c.pushes.pop(0)
    assert opcode == OP_DELIVER and struct.unpack("<I", body[:4])[0] == 1, (opcode, body)
    assert [r["id"] for r in records(body[8:], struct.unpack("<I", body[4:8])[0])] == [first_id]
    op, err = c.reply(c.send(OP_SUBSCRIBE, sub(2, 0, 0, 0x02)))
    assert op == OP_ERROR and err["code"] == E_BAD_REQUEST, err
    op, err = c.reply(c.send(OP_SUBSCRIBE, sub(3, 1, first_id + 5, 0)))
    assert op == OP_ERROR and err["code"] == E_AHEAD_OF_HEAD, err
    assert str(first_id) in err["message"], err
    print("delivery rules ok")


def lifecycle_rules(addr, key):
    """Version 2 (uuids in PublishAck), Edit by id, Delete by uuid, a second
    Delete refused with MessageDeleted, History and Fetch in the current view
    and with the raw option."""
    c = Conn(addr)
    op, body = c.reply(c.send(OP_HELLO, hello_body(1, 2)))
    assert op == OP_HELLO_OK and struct.unpack("<H", body[:2])[0] == 2, body
    op, body = c.reply(c.send(OP_AUTH, s16(key) + s16("") + s16("")))
    assert op == OP_AUTH_OK, body
    c.reply(c.send(OP_CHANNEL_CREATE, json.dumps({"name": "edits"}).encode()))
    op, body = c.reply(c.send(OP_PUBLISH, publish_body("edits", 1, [b"a", b"b"])))
    assert op == OP_PUBLISH_ACK, body
    count, first, dups = struct.unpack("<IQI", body[:16])
    assert (count, dups, len(body)) == (2, 0, 16 + 2 * 16), body
    uuids = [body[16 + 16 * i : 32 + 16 * i] for i in range(count)]
    assert uuids[0] != uuids[1] and all(u[6] >> 4 == 4 and u[8] >> 6 == 2 for u in uuids)
    op, body = c.reply(c.send(OP_EDIT, s16("edits") + struct.pack("<BBQB", 1, 0, first, 2) + b"a2"))
    assert op == OP_PUBLISH_ACK, body
    _, edit_id, _ = struct.unpack("<IQI", body[:16])
    assert edit_id == first + 2 and body[16:] == uuids[0], body
    delete = s16("edits") + struct.pack("<BB", 1, 1) + uuids[1]
    op, body = c.reply(c.send(OP_DELETE, delete))
    assert op == OP_PUBLISH_ACK and struct.unpack("<IQ", body[:12])[1] == edit_id + 1, body
    assert body[16:] == uuids[1]
    op, err = c.reply(c.send(OP_DELETE, delete))
    assert op == OP_ERROR and err["code"] == E_MESSAGE_DELETED, err
    hist = s16("edits") + s16("") + struct.pack("<BQQI", 1, 0, 0, 0)
    op, body = c.reply(c.send(OP_HISTORY, hist))
    page = records(body[4:], struct.unpack("<I", body[:4])[0])
    assert [(r["id"], r["payload"], r["ref_id"]) for r in page] == [(first, b"a2", edit_id)], page
    op, body = c.reply(c.send(OP_HISTORY, hist + b"\x01"))
    page = records(body[4:], struct.unpack("<I", body[:4])[0])
    assert [(r["action"], r["ref_id"]) for r in page] == [(0, None), (0, None), (4, first), (5, first + 1)], page
    op, err = c.reply(c.send(OP_FETCH, s16("edits") + struct.pack("<Q", first + 1)))
    assert op == OP_ERROR and err["code"] == E_MESSAGE_NOT_FOUND, err
    op, body = c.reply(c.send(OP_FETCH, s16("edits") + struct.pack("<QB", first + 1, 1)))
    assert op == OP_MESSAGE and records(body, 1)[0]["payload"] == b"b", body
    # A live-only message (flag bit 10): a Live push with id 0 for a live
    # subscription, first_id 0 in the PublishAck, nothing stored.
    sub = struct.pack("<I", 5) + s16("edits") + s16("") + struct.pack("<BQ", 0, 0)
    op, body = c.reply(c.send(OP_SUBSCRIBE, sub))
    assert op == OP_SUBSCRIBED, body
    lbody = struct.pack("<BBH", 0, 2, 1 << 10) + b"typing"
    op, body = c.reply(c.send(OP_PUBLISH, s16("edits") + struct.pack("<BII", 1, 1, len(lbody)) + lbody))
    assert op == OP_PUBLISH_ACK and struct.unpack("<IQI", body[:16]) == (1, 0, 0) and len(body) == 32, body
    while not c.pushes:
        c.pushes.append(c.read_frame()[::2])
    opcode, body = c.pushes.pop(0)
    assert opcode == OP_LIVE and struct.unpack("<I", body[:4])[0] == 5, (opcode, body)
    rec = records(body[4:], 1)[0]
    assert (rec["id"], rec["payload"]) == (0, b"typing") and rec["uuid"] is not None, rec
    op, body = c.reply(c.send(OP_HISTORY, hist + b"\x01"))
    assert struct.unpack("<I", body[:4])[0] == 4, "nothing stored"
    print("lifecycle rules ok")


def shutdown_rules(addr, key):
    """Connection lifecycle 9: after what it owed, every connection gets
    ShuttingDown on request_id 0, then the close."""
    c, _, _ = connect(addr, key)
    sub = struct.pack("<I", 3) + s16("py") + s16("") + struct.pack("<BQ", 0, 0)
    op, _ = c.reply(c.send(OP_SUBSCRIBE, sub))
    assert op == OP_SUBSCRIBED
    bare = Conn(addr)  # not even a Hello yet
    print("waiting for shutdown", flush=True)
    for conn in (c, bare):
        conn.sock.settimeout(30)
        while True:
            opcode, rid, body = conn.read_frame()
            if opcode != OP_ERROR:
                continue
            assert rid == 0 and struct.unpack("<H", body[:2])[0] == E_SHUTTING_DOWN, body
            break
        expect_closed(conn)
    print("shutdown ok")


def records(buf, count):
    """Walks `count` records, checking each CRC (CRC-32 of bytes [8, 8+len))."""
    out, pos = [], 0
    for _ in range(count):
        length, crc = struct.unpack("<II", buf[pos : pos + 8])
        rec = buf[pos : pos + 8 + length]
        assert zlib.crc32(rec[8:]) == crc, "record CRC"
        rid, created, action, ctype, flags = struct.unpack("<QQBBH", rec[8:28])
        off = 28
        for bit in (0, 1, 2):  # author fields, u64 each
            if flags & (1 << bit):
                off += 8
        room = uuid = ref_id = None
        if flags & FLAG_ROOM:
            n = rec[off]
            room = rec[off + 1 : off + 1 + n].decode()
            off += 1 + n
        if flags & (1 << 4):  # object class
            off += 1 + rec[off]
        for bit in (5, 6):  # pm_users, exclude_users: a count, then names
            if flags & (1 << bit):
                count, off = rec[off], off + 1
                for _ in range(count):
                    off += 1 + rec[off]
        if flags & (1 << 7):
            uuid, off = rec[off : off + 16], off + 16
        if flags & (1 << 8):
            (ref_id,), off = struct.unpack("<Q", rec[off : off + 8]), off + 8
        if flags & (1 << 9):  # idempotency key
            off += 1 + rec[off]
        assert flags >> 11 == 0, "bits 11 to 15 are 0"
        out.append(
            {"id": rid, "room": room, "action": action, "uuid": uuid, "ref_id": ref_id, "payload": rec[off:]}
        )
        pos += 8 + length
    assert pos == len(buf)
    return out


def connect(addr, key, user_key="", instance=""):
    c = Conn(addr)
    op, body = c.reply(c.send(OP_HELLO, struct.pack("<HH", 1, 1) + s16("spec-client.py")))
    assert op == OP_HELLO_OK and struct.unpack("<H", body[:2])[0] == 1
    op, body = c.reply(c.send(OP_AUTH, s16(key) + s16(user_key) + s16(instance)))
    assert op == OP_AUTH_OK, body
    kind = body[0]
    (name_len,) = struct.unpack("<H", body[9:11])
    return c, kind, body[11 : 11 + name_len].decode()


def admin(c, command):
    op, body = c.reply(c.send(OP_ADMIN, json.dumps(command).encode()))
    assert op == OP_ADMIN_RESULT, body
    return json.loads(body)


def tenancy(addr, key):
    root, _, _ = connect(addr, key)
    admin(root, {"op": "instance.create", "name": "pyinst"})
    c, kind, instance = connect(addr, key, instance="pyinst")
    assert (kind, instance) == (0, "pyinst"), (kind, instance)
    api = admin(c, {"op": "key.create", "description": "py"})
    user = admin(c, {"op": "user.create", "username": "ada"})
    assert len(api["key"]) == 40 and len(user["user_key"]) == 40
    listed = admin(c, {"op": "key.list", "kind": "api"})
    assert [k["id"] for k in listed] == [api["id"]] and "key" not in listed[0]
    create = {"name": "readonly", "other_permissions": "subscribe"}
    op, _ = c.reply(c.send(OP_CHANNEL_CREATE, json.dumps(create).encode()))
    assert op == OP_CHANNEL
    u, kind, instance = connect(addr, api["key"], user["user_key"])
    assert (kind, instance) == (2, "pyinst"), (kind, instance)
    hist = s16("readonly") + s16("") + struct.pack("<BQQI", 0, 0, 0, 10)
    op, body = u.reply(u.send(OP_HISTORY, hist))
    assert op == OP_HISTORY_PAGE and body[:4] == b"\0\0\0\0"
    one = struct.pack("<BBH", 0, 2, 0) + b"x"
    pub = s16("readonly") + struct.pack("<BI", 1, 1) + struct.pack("<I", len(one)) + one
    op, err = u.reply(u.send(OP_PUBLISH, pub))
    assert op == OP_ERROR and err["code"] == 12, err  # PermissionDenied
    op, err = root.reply(root.send(OP_HISTORY, hist))
    assert op == OP_ERROR and err["code"] == 20, err  # not in the default instance
    print("tenancy ok")


def main(addr, key):
    c, kind, instance = connect(addr, key)
    print("hello ok")
    assert instance == "default", instance
    print("auth ok kind=%d" % kind)
    op, body = c.reply(c.send(OP_CHANNEL_CREATE, json.dumps({"name": "py"}).encode()))
    assert op == OP_CHANNEL and json.loads(body)["name"] == "py"
    print("channel ok")
    sub = struct.pack("<I", 7) + s16("py") + s16("") + struct.pack("<BQ", 2, 0)
    op, body = c.reply(c.send(OP_SUBSCRIBE, sub))
    assert op == OP_SUBSCRIBED and struct.unpack("<I", body[:4])[0] == 7
    print("subscribed ok")
    msgs = b""
    for i in range(3):
        room = b"Lobby"
        mbody = struct.pack("<BBH", 0, 2, FLAG_ROOM) + bytes([len(room)]) + room + b"msg %d" % i
        msgs += struct.pack("<I", len(mbody)) + mbody
    op, body = c.reply(c.send(OP_PUBLISH, s16("py") + struct.pack("<BI", 1, 3) + msgs))
    assert op == OP_PUBLISH_ACK, body
    count, first_id, dups = struct.unpack("<IQI", body[:16])
    assert (count, first_id, dups) == (3, 1, 0), (count, first_id, dups)
    print("publish ack first_id=%d" % first_id)
    got = []
    while len(got) < 3:
        if not c.pushes:
            c.pushes.append(c.read_frame()[::2])
        opcode, body = c.pushes.pop(0)
        assert opcode == OP_DELIVER, opcode
        sub_id, n = struct.unpack("<II", body[:8])
        assert sub_id == 7
        got += records(body[8:], n)
    assert [r["id"] for r in got] == [1, 2, 3]
    assert all(r["room"] == "lobby" for r in got)
    assert got[2]["payload"] == b"msg 2"
    print("deliver ok")
    hist = s16("py") + s16("") + struct.pack("<BQQI", 0, 0, 0, 2)
    op, body = c.reply(c.send(OP_HISTORY, hist))
    assert op == OP_HISTORY_PAGE
    page = records(body[4:], struct.unpack("<I", body[:4])[0])
    assert [r["id"] for r in page] == [3, 2], page
    print("history ok")
    op, err = c.reply(c.send(OP_PUBLISH, s16("missing") + struct.pack("<BI", 1, 1) + msgs[: 4 + 4 + 6 + 5]))
    assert op == OP_ERROR and err["code"] == 20, err
    op, body = c.reply(c.send(OP_PING, b"still"))
    assert op == OP_PONG and body == b"still"
    print("errors ok")
    tenancy(addr, key)
    handshake_rules(addr, key)
    order_rules(addr, key)
    name_rules(addr, key)
    payload_rules(addr, key)
    history_rules(addr, key)
    delivery_rules(addr, key)
    lifecycle_rules(addr, key)
    shutdown_rules(addr, key)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
