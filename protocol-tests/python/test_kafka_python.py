"""kafka-python (a pure-Python client): a second, independent protocol path.

The broker comes from METROBUS_BOOTSTRAP (an already running broker) or is
started here from the binary (METROBUS_BIN, else
$CARGO_TARGET_DIR/release/metrobus, else ~/.cache/metrobus-target/release/
metrobus) with port 0 and an announce file, like the Rust harness.

Run: $HOME/.cache/metrobus-venv/bin/python -m pytest protocol-tests/python -v
"""

import os
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerrors

from conftest import Broker, running_broker

OP_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    external = os.environ.get("METROBUS_BOOTSTRAP")
    if external:
        yield Broker(external)
        return
    with running_broker(tmp_path_factory, "metrobus") as b:
        yield b


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(broker):
    a = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap,
        client_id="metrobus-kafka-python",
        request_timeout_ms=OP_TIMEOUT_S * 1000,
    )
    yield a
    a.close()


def _create(admin, topic, partitions=1, configs=None):
    spec = {"num_partitions": partitions, "replication_factor": 1}
    if configs:
        spec["configs"] = configs
    admin.create_topics({topic: spec})


def _wait_for(what, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _consumer(broker):
    return KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        client_id="metrobus-kafka-python",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=OP_TIMEOUT_S * 1000 + 5000,
    )


def _poll_n(consumer, n, timeout=OP_TIMEOUT_S):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"got {len(out)} of {n} records within {timeout}s")
        batches = consumer.poll(timeout_ms=500)
        for tp in sorted(batches):
            out.extend(batches[tp])
    return out


def test_admin_create_list_delete(broker, admin):
    topic = _name("py-admin")
    _create(admin, topic, partitions=3, configs={"retention.ms": "3600000"})
    _wait_for("topic in list_topics", lambda: topic in admin.list_topics())
    described = admin.describe_topics([topic])
    assert len(described) == 1
    assert described[0]["name"] == topic
    assert len(described[0]["partitions"]) == 3

    with pytest.raises(kerrors.TopicAlreadyExistsError):
        _create(admin, topic)
    with pytest.raises(kerrors.InvalidTopicError):
        _create(admin, "bad/name")

    admin.delete_topics([topic])
    _wait_for("topic gone from list_topics", lambda: topic not in admin.list_topics())
    with pytest.raises(kerrors.UnknownTopicOrPartitionError):
        admin.delete_topics([topic])
    broker.assert_alive()


def test_produce_and_consume_in_assign_mode(broker, admin):
    topic = _name("py-roundtrip")
    _create(admin, topic, partitions=2)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        client_id="metrobus-kafka-python",
        acks="all",
        # The default (idempotent) settings are covered by
        # test_default_producer_is_idempotent.
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=OP_TIMEOUT_S * 1000,
    )
    t0 = int(time.time() * 1000) - 60_000
    sent = []
    for i in range(50):
        key = None if i % 10 == 3 else f"key-{i}".encode()
        value = None if i % 10 == 7 else f"value-{i}".encode() * (i + 1)
        headers = [("i", str(i).encode()), ("empty", b"")]
        md = producer.send(
            topic,
            key=key,
            value=value,
            headers=headers,
            partition=i % 2,
            timestamp_ms=t0 + i,
        ).get(timeout=OP_TIMEOUT_S)
        assert md.partition == i % 2
        assert md.offset == i // 2, f"record {i}: offset {md.offset}"
        sent.append((i % 2, md.offset, key, value, headers, t0 + i))
    producer.flush(timeout=OP_TIMEOUT_S)
    producer.close()

    consumer = _consumer(broker)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records = _poll_n(consumer, len(sent))
    got = sorted(
        (r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in records
    )
    assert got == sorted(sent)
    for r in records:
        assert r.timestamp_type == 0, "CreateTime"

    assert consumer.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
    assert consumer.end_offsets(tps) == {tps[0]: 25, tps[1]: 25}
    found = consumer.offsets_for_times({tps[0]: t0 + 10})
    assert found[tps[0]] is not None and found[tps[0]].offset == 5
    assert consumer.offsets_for_times({tps[0]: t0 + 10_000})[tps[0]] is None
    consumer.close()
    broker.assert_alive()


def test_gzip_round_trip(broker, admin):
    topic = _name("py-gzip")
    _create(admin, topic)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks=1,
        enable_idempotence=False,
        compression_type="gzip",
        linger_ms=20,
    )
    futures = [
        producer.send(topic, value=(f"gzip {i} " + "x" * 200).encode(), partition=0)
        for i in range(200)
    ]
    producer.flush(timeout=OP_TIMEOUT_S)
    offsets = [f.get(timeout=OP_TIMEOUT_S).offset for f in futures]
    assert offsets == list(range(200))
    producer.close()

    consumer = _consumer(broker)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records = _poll_n(consumer, 200)
    assert [r.offset for r in records] == list(range(200))
    assert [r.value for r in records] == [(f"gzip {i} " + "x" * 200).encode() for i in range(200)]
    consumer.close()
    broker.assert_alive()


def test_default_producer_is_idempotent(broker, admin):
    # kafka-python 3 (like the Java client since 3.0) defaults to an
    # idempotent producer: InitProducerId, then batches with sequences.
    topic = _name("py-idempotent")
    _create(admin, topic)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=10_000)
    assert producer.config["enable_idempotence"], "the client default under test"
    try:
        md = producer.send(topic, value=b"idempotent", partition=0).get(timeout=OP_TIMEOUT_S)
        assert md.offset == 0
    finally:
        producer.close(timeout=5)
    consumer = _consumer(broker)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records = _poll_n(consumer, 1)
    assert records[0].value == b"idempotent"
    consumer.close()


def test_transactions_commit_abort_and_read_committed(broker, admin):
    """kafka-python's own transactional producer (not librdkafka's): the
    committed transaction reaches a read_committed consumer, the aborted
    one only a read_uncommitted consumer."""
    topic = _name("py-txn")
    _create(admin, topic)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        client_id="metrobus-kafka-python",
        transactional_id=_name("py-tx"),
        request_timeout_ms=OP_TIMEOUT_S * 1000,
    )
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(3):
        producer.send(topic, f"c{i}".encode(), partition=0)
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send(topic, b"aborted", partition=0)
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, b"c3", partition=0)
    producer.commit_transaction()
    producer.close()

    def read(isolation, n):
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            client_id="metrobus-kafka-python",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation,
            request_timeout_ms=OP_TIMEOUT_S * 1000 + 5000,
        )
        consumer.assign([TopicPartition(topic, 0)])
        got = [r.value for r in _poll_n(consumer, n)]
        # Nothing more arrives: the aborted record is not late, it is gone.
        extra = consumer.poll(timeout_ms=1000)
        consumer.close()
        return got, sum(len(v) for v in extra.values())

    committed, extra = read("read_committed", 4)
    assert committed == [b"c0", b"c1", b"c2", b"c3"]
    assert extra == 0
    everything, extra = read("read_uncommitted", 5)
    assert everything == [b"c0", b"c1", b"c2", b"aborted", b"c3"]
    assert extra == 0
    broker.assert_alive()
