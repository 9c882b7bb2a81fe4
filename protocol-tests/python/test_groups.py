"""Consumer groups from Python (issue 3): kafka-python's group consumer (a
second, independent implementation of the classic protocol), and the group
admin APIs of confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient (list/describe/delete groups; list/alter/delete committed
offsets; removing members).

The broker is started here like in test_kafka_python.py, with group settings
that make rebalances fast (METROBUS_BOOTSTRAP is not honoured: these tests
need those settings).

Run: $HOME/.cache/metrobus-venv/bin/python -m pytest protocol-tests/python/test_groups.py -q
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient as CkAdminClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerrors
from kafka.admin import MemberToRemove
from kafka.structs import OffsetAndMetadata

from conftest import running_broker

OP_TIMEOUT_S = 30
GROUP_TIMEOUT_S = 60
SESSION_TIMEOUT_MS = 6000
GROUP_ENV = {
    "METROBUS_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "METROBUS_GROUP_MIN_SESSION_TIMEOUT_MS": "1000",
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory, "metrobus-groups", env=GROUP_ENV) as b:
        yield b


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _wait_for(what, cond, timeout=GROUP_TIMEOUT_S, step=None):
    """Waits until cond() is true; `step` runs between checks (e.g. polls)."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.05)


@pytest.fixture
def admin(broker):
    a = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap,
        client_id="metrobus-groups",
        request_timeout_ms=OP_TIMEOUT_S * 1000,
    )
    yield a
    a.close()


def _create(admin, topic, partitions):
    admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})


def _produce(broker, topic, prefix, indexes):
    """Keyed records; returns {(partition, offset): value}."""
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
    )
    futures = [
        (f"{prefix}-{i}".encode(), producer.send(topic, key=f"key-{i}".encode(),
                                                 value=f"{prefix}-{i}".encode()))
        for i in indexes
    ]
    producer.flush(timeout=OP_TIMEOUT_S)
    out = {}
    for value, f in futures:
        md = f.get(timeout=OP_TIMEOUT_S)
        out[(md.partition, md.offset)] = value
    producer.close()
    return out


def _ends(produced):
    ends = {}
    for p, o in produced:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


def _group_consumer(broker, group, client_id, **extra):
    conf = dict(
        bootstrap_servers=broker.bootstrap,
        client_id=client_id,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=100,
        request_timeout_ms=OP_TIMEOUT_S * 1000 + 5000,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


class Member:
    """A kafka-python group consumer and the records it received."""

    def __init__(self, broker, group, topic, client_id):
        self.client_id = client_id
        self.consumer = _group_consumer(broker, group, client_id)
        self.consumer.subscribe([topic])
        # Have the topic's partitions before the first poll joins the group.
        # Otherwise kafka-python may join, be the leader and run its assignor
        # before its first metadata answer ("No partition metadata for
        # topic"), assign nothing, and (in about one run in ten here) not
        # rejoin when the metadata comes, so the member never reads.
        assert self.consumer.partitions_for_topic(topic), f"no metadata for {topic}"
        self.records = []

    def poll(self):
        batches = self.consumer.poll(timeout_ms=50)
        for tp in sorted(batches):
            for r in batches[tp]:
                self.records.append(((r.partition, r.offset), r.value))

    def partitions(self):
        return {tp.partition for tp in self.consumer.assignment()}


def _poll_all(members):
    def step():
        for m in members:
            m.poll()
    return step


def _assert_exactly_once(what, records, expected):
    seen = {}
    for key, value in records:
        assert key in expected, f"{what}: unexpected record {key} {value!r}"
        assert expected[key] == value, f"{what}: value at {key}"
        seen[key] = seen.get(key, 0) + 1
    dups = sorted(k for k, n in seen.items() if n > 1)
    missing = sorted(k for k in expected if k not in seen)
    assert not dups and not missing, (
        f"{what}: {len(dups)} duplicates (first {dups[:10]}), "
        f"{len(missing)} missing (first {missing[:10]})"
    )


def _covers(records, expected):
    got = {k for k, _ in records}
    return all(k in got for k in expected)


def test_kafka_python_group_shares_topic_and_resumes(broker, admin):
    topic = _name("py-group")
    group = _name("py-group")
    _create(admin, topic, 4)
    a = Member(broker, group, topic, "py-member-a")
    b = Member(broker, group, topic, "py-member-b")
    members = [a, b]
    _wait_for(
        "two kafka-python members with 2 partitions each",
        lambda: len(a.partitions()) == 2 and len(b.partitions()) == 2
        and not (a.partitions() & b.partitions()),
        step=_poll_all(members),
    )
    first = _produce(broker, topic, "first", range(400))
    assert len(_ends(first)) == 4, "records in every partition"
    _wait_for("every record", lambda: _covers(a.records + b.records, first),
              step=_poll_all(members))
    for _ in range(10):  # stray duplicates would show up here
        _poll_all(members)()
    assert {k[0] for k, _ in a.records} <= a.partitions()
    assert {k[0] for k, _ in b.records} <= b.partitions()
    _assert_exactly_once("two kafka-python members", a.records + b.records, first)

    # a commits its position; b commits the middle of each of its partitions
    # (explicit offsets with metadata).
    ends = _ends(first)
    a.consumer.commit()
    b_marks = {p: ends[p] // 2 for p in b.partitions()}
    b.consumer.commit({
        TopicPartition(topic, p): OffsetAndMetadata(o, f"mark {p}", -1) for p, o in b_marks.items()
    })
    for p in a.partitions():
        assert a.consumer.committed(TopicPartition(topic, p)) == ends[p]
    for p, o in b_marks.items():
        assert b.consumer.committed(TopicPartition(topic, p)) == o
    for m in members:
        m.consumer.close()

    offsets = admin.list_group_offsets(group)[group]
    for p in range(4):
        want = b_marks.get(p, ends[p])
        assert offsets[TopicPartition(topic, p)].offset == want, offsets
    for p, o in b_marks.items():
        assert offsets[TopicPartition(topic, p)].metadata == f"mark {p}"

    # A new member resumes at the commits.
    second = _produce(broker, topic, "second", range(400, 500))
    expected = {k: v for k, v in first.items() if k[0] in b_marks and k[1] >= b_marks[k[0]]}
    expected.update(second)
    c = Member(broker, group, topic, "py-member-c")
    _wait_for("records after the commits", lambda: _covers(c.records, expected),
              step=_poll_all([c]))
    for _ in range(10):
        c.poll()
    _assert_exactly_once("resumed member", c.records, expected)
    c.consumer.close()
    broker.assert_alive()


def _ck_member(broker, group, topic, client_id):
    c = CkConsumer({
        "bootstrap.servers": broker.bootstrap,
        "broker.address.family": "v4",
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
    })
    c.subscribe([topic])
    return c


def _ck_result(future):
    return future.result(timeout=OP_TIMEOUT_S)


def _ck_offsets(ck_admin, group, topic, partitions):
    req = [ConsumerGroupTopicPartitions(
        group, [CkTopicPartition(topic, p) for p in range(partitions)])]
    res = _ck_result(ck_admin.list_consumer_group_offsets(req)[group])
    assert res.group_id == group
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def test_confluent_admin_client_groups(broker, admin):
    topic = _name("ck-admin")
    group = _name("ck-admin")
    _create(admin, topic, 3)
    produced = _produce(broker, topic, "value", range(90))
    ends = _ends(produced)
    ck_admin = CkAdminClient({"bootstrap.servers": broker.bootstrap,
                              "broker.address.family": "v4"})

    consumer = _ck_member(broker, group, topic, "ck-member")
    got = []

    def poll():
        m = consumer.poll(0.05)
        if m is not None and m.error() is None:
            got.append((m.partition(), m.offset()))
    _wait_for("the member has every record",
              lambda: set(got) >= set(produced), step=poll)
    consumer.commit(asynchronous=False)

    # ListGroups with a states filter, DescribeGroups.
    def listed(states=None):
        kwargs = {"states": states} if states else {}
        res = _ck_result(ck_admin.list_consumer_groups(**kwargs))
        assert not res.errors, res.errors
        return {g.group_id: g for g in res.valid}
    stable = listed({ConsumerGroupState.STABLE})
    assert group in stable and stable[group].state == ConsumerGroupState.STABLE
    assert not stable[group].is_simple_consumer_group
    assert group not in listed({ConsumerGroupState.EMPTY})
    desc = _ck_result(ck_admin.describe_consumer_groups([group])[group])
    assert desc.state == ConsumerGroupState.STABLE
    assert desc.partition_assignor == "range"
    assert [m.client_id for m in desc.members] == ["ck-member"]
    assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1, 2]
    assert desc.coordinator is not None and desc.coordinator.port > 0

    # OffsetFetch through the admin client.
    assert _ck_offsets(ck_admin, group, topic, 3) == ends

    # Altering offsets while the member is in the group fails; after it
    # left, it works.
    req = [ConsumerGroupTopicPartitions(
        group, [CkTopicPartition(topic, p, 1) for p in range(3)])]
    try:
        res = _ck_result(ck_admin.alter_consumer_group_offsets(req)[group])
        busy = " ".join(str(tp.error) for tp in res.topic_partitions)
    except Exception as e:  # librdkafka may raise the partition error
        busy = str(e)
    assert "UNKNOWN_MEMBER_ID" in busy, busy
    with pytest.raises(Exception) as non_empty:
        _ck_result(ck_admin.delete_consumer_groups([group])[group])
    assert "NON_EMPTY_GROUP" in str(non_empty.value), non_empty.value

    consumer.close()
    _wait_for("group Empty", lambda: group in listed({ConsumerGroupState.EMPTY}))
    res = _ck_result(ck_admin.alter_consumer_group_offsets(req)[group])
    assert all(tp.error is None for tp in res.topic_partitions), res.topic_partitions
    assert _ck_offsets(ck_admin, group, topic, 3) == {0: 1, 1: 1, 2: 1}

    _ck_result(ck_admin.delete_consumer_groups([group])[group])
    assert group not in listed()
    assert _ck_offsets(ck_admin, group, topic, 3) == {0: -1001, 1: -1001, 2: -1001}
    unknown = _name("no-such-group")
    with pytest.raises(Exception) as not_found:
        _ck_result(ck_admin.delete_consumer_groups([unknown])[unknown])
    assert "GROUP_ID_NOT_FOUND" in str(not_found.value), not_found.value
    broker.assert_alive()


def test_kafka_python_admin_offsets_and_members(broker, admin):
    topic = _name("kp-admin")
    other_topic = _name("kp-admin-other")
    group = _name("kp-admin")
    _create(admin, topic, 2)
    _create(admin, other_topic, 1)
    produced = _produce(broker, topic, "value", range(40))
    ends = _ends(produced)

    m = Member(broker, group, topic, "kp-member")
    _wait_for("the member has every record", lambda: _covers(m.records, produced),
              step=_poll_all([m]))
    m.consumer.commit()
    # The admin form of OffsetCommit (no generation, no member) is refused
    # while the group has members.
    res = admin.alter_group_offsets(group, {TopicPartition(other_topic, 0): OffsetAndMetadata(0, "", -1)})
    assert res == {TopicPartition(other_topic, 0): kerrors.UnknownMemberIdError}, res

    # list_groups with a states filter and describe_groups.
    stable = {g["group_id"]: g for g in admin.list_groups(states_filter=["Stable"])}
    assert group in stable, stable
    described = admin.describe_groups([group])[group]
    assert described["group_state"] == "Stable", described
    assert described["protocol_type"] == "consumer"
    assert [mm["client_id"] for mm in described["members"]] == ["kp-member"]

    # OffsetDelete on a topic the group still subscribes to is refused per
    # partition.
    res = admin.delete_group_offsets(group, [TopicPartition(topic, 0)])
    assert res == {TopicPartition(topic, 0): kerrors.GroupSubscribedToTopicError}, res

    # Removing the member (batched LeaveGroup) empties the group.
    member_id = described["members"][0]["member_id"]
    removed = admin.remove_group_members(group, [MemberToRemove(member_id=member_id)])
    assert list(removed.values()) == [kerrors.NoError], removed
    _wait_for("group Empty",
              lambda: admin.describe_groups([group])[group]["group_state"] == "Empty")
    m.consumer.close()

    # Now OffsetDelete works, and the offsets of the other partition stay.
    res = admin.delete_group_offsets(group, [TopicPartition(topic, 0)])
    assert res == {TopicPartition(topic, 0): kerrors.NoError}, res
    offsets = admin.list_group_offsets({group: None})[group]
    assert TopicPartition(topic, 0) not in offsets, offsets
    assert offsets[TopicPartition(topic, 1)].offset == ends[1], offsets

    # Multi-group OffsetFetch (v8+) with an unknown group in it.
    unknown = _name("kp-unknown")
    both = admin.list_group_offsets({group: [TopicPartition(topic, 1)], unknown: [TopicPartition(topic, 1)]})
    assert both[group][TopicPartition(topic, 1)].offset == ends[1], both
    assert both[unknown].get(TopicPartition(topic, 1)) is None or \
        both[unknown][TopicPartition(topic, 1)].offset == -1, both

    assert dict(admin.delete_groups([group, unknown])) == {
        group: "OK", unknown: "GroupIdNotFoundError"}
    assert group not in {g["group_id"] for g in admin.list_groups()}
    broker.assert_alive()
