#!/usr/bin/env python3
"""The official Syncano Python library (syncano 5.4.6, unchanged but for a
Python 3.8+ metaclass fix applied by .ci/legacy-clients) against a running
tidewire HTTP shim.

Usage: syncano_py.py HTTP_BASE ACCOUNT_KEY   (for example http://127.0.0.1:7480 KEY)

Exercises what deployed apps do with the library: create, get, save (PUT),
update (PATCH) and list channels; publish (payload sent as a JSON string);
long-poll with last_id through the library's PollThread; history pages
followed through `next`; rooms on a separate_rooms channel; a refused
publish; delete. Prints one line per
check and exits non-zero on the first failure.
"""
import sys
import threading
import time

import syncano
from syncano.exceptions import SyncanoRequestError
from syncano.models import Channel, Message


def main(host, key):
    syncano.connect(host=host, api_key=key)
    inst = "default"

    ch = Channel.please.create(instance_name=inst, name="legacypy", custom_publish=True)
    assert ch.name == "legacypy" and ch.links, ch
    print("create ok")
    got = Channel.please.get(instance_name=inst, name="legacypy")
    assert got.type == "default" and got.custom_publish is True, got
    got.other_permissions = "subscribe"
    got.save()
    assert Channel.please.get(instance_name=inst, name="legacypy").other_permissions == "subscribe"
    print("save ok")
    Channel.please.update(instance_name=inst, name="legacypy", data={"group_permissions": "subscribe"})
    assert Channel.please.get(instance_name=inst, name="legacypy").group_permissions == "subscribe"
    print("update ok")
    names = [c.name for c in Channel.please.list(instance_name=inst)]
    assert "legacypy" in names and "default" in names, names
    print("list ok")

    received = []
    done = threading.Event()

    def callback(message=None):
        if message is not None:
            received.append(message)
        if len(received) >= 3:
            done.set()
            return False
        return True

    stop = got.poll(callback=callback, timeout=30)
    time.sleep(0.5)  # the poll thread parks first: no last_id means new messages only
    sent = []
    for n in range(3):
        m = got.publish({"n": n, "text": "hello"})
        sent.append(m.id)
        assert m.payload == {"n": n, "text": "hello"}, m.payload
        assert m.created_at is not None
    print("publish ok")
    assert done.wait(20), "the poll thread got %d of 3 messages" % len(received)
    stop()
    assert [m.payload["n"] for m in received] == [0, 1, 2], [m.payload for m in received]
    assert [m.id for m in received] == sent, (sent, [m.id for m in received])
    print("poll ok")

    pages = Message.please.list(instance_name=inst, channel_name="legacypy").page_size(1)
    ids = [m.id for m in pages]
    assert ids == list(reversed(sent)), ids
    print("history ok")

    # The guide's separate rooms: every message names its room, and an
    # admin reads the whole history without one.
    rooms = Channel.please.create(
        instance_name=inst, name="legacyrooms", type="separate_rooms", custom_publish=True
    )
    a = rooms.publish(payload={"n": 1}, room="r1")
    b = rooms.publish(payload={"n": 2}, room="r2")
    assert (a.room, b.room) == ("r1", "r2"), (a.room, b.room)
    whole = [(m.id, m.room) for m in Message.please.list(instance_name=inst, channel_name="legacyrooms")]
    assert whole == [(b.id, "r2"), (a.id, "r1")], whole
    rooms.delete()
    print("rooms ok")

    closed = Channel.please.create(instance_name=inst, name="legacyclosed")
    try:
        closed.publish({"x": 1})
        raise AssertionError("publish to a custom_publish=false channel succeeded")
    except SyncanoRequestError as e:
        assert e.status_code == 403, e.status_code
    print("refusal ok")

    got.delete()
    closed.delete()
    try:
        Channel.please.get(instance_name=inst, name="legacypy")
        raise AssertionError("deleted channel still there")
    except Channel.DoesNotExist:
        pass
    print("delete ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
