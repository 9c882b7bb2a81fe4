"""Tenants from Python (issue 5): kafka-python logs in with SASL PLAIN (the
password is checked against the user's SCRAM credentials) and uses its
tenant's names; confluent-kafka's AdminClient manages SCRAM users as the
super user (AlterUserScramCredentials / DescribeUserScramCredentials), a
user it creates logs in at once, and a tenant's user may not manage users.

The broker is started here with a PLAINTEXT and a SASL_PLAINTEXT listener,
the `admin` super user and alice@acme seeded from its environment.

Run: $HOME/.cache/metrobus-venv/bin/python -m pytest protocol-tests/python/test_tenancy.py -q
"""

import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient as CkAdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerrors
from kafka.admin import NewTopic

from conftest import running_broker

OP_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def sasl(tmp_path_factory):
    env = {
        "METROBUS_SUPER_USERS": "User:admin",
        "METROBUS_SASL_SEED_USERS": "admin:admin-secret,alice@acme:alice-secret",
    }
    with running_broker(
        tmp_path_factory,
        "metrobus-tenancy",
        listeners="PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        env=env,
    ) as b:
        assert "SASL_PLAINTEXT" in b.listeners, b.listeners
        yield b.listeners["SASL_PLAINTEXT"]


def _plain(bootstrap, user, password):
    return dict(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username=user,
        sasl_plain_password=password,
    )


def _ck_admin(bootstrap, user, password):
    return CkAdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": password,
        }
    )


def test_kafka_python_plain_uses_its_tenants_names(sasl):
    login = _plain(sasl, "alice@acme", "alice-secret")
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**login)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        assert topic in admin.list_topics()
        assert all(not t.startswith("acme.") for t in admin.list_topics())
        assert "__consumer_offsets" not in admin.list_topics()
    finally:
        admin.close()
    producer = KafkaProducer(**login)
    producer.send(topic, b"from-python").get(timeout=OP_TIMEOUT_S)
    producer.close()
    consumer = KafkaConsumer(
        **login, auto_offset_reset="earliest", consumer_timeout_ms=10_000
    )
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b"from-python"]


def test_super_user_creates_a_tenant_user_that_logs_in(sasl):
    admin = _ck_admin(sasl, "admin", "admin-secret")
    upsert = UserScramCredentialUpsertion(
        "carol@acme",
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
        b"carol-secret",
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=OP_TIMEOUT_S)
    described = admin.describe_user_scram_credentials(["carol@acme"])
    infos = described["carol@acme"].result(timeout=OP_TIMEOUT_S).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_256, 4096)]

    # carol logs in with PLAIN (checked against her new SCRAM credential)
    # and sees her tenant's topics.
    login = _plain(sasl, "carol@acme", "carol-secret")
    consumer = KafkaConsumer(**login)
    assert all(not t.startswith("acme.") for t in consumer.topics())
    consumer.close()
    with pytest.raises(kerrors.KafkaError):
        KafkaConsumer(**_plain(sasl, "carol@acme", "wrong"), api_version_auto_timeout_ms=5000)


def test_a_tenants_user_cannot_manage_users(sasl):
    admin = _ck_admin(sasl, "alice@acme", "alice-secret")
    upsert = UserScramCredentialUpsertion(
        "mallory@acme",
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
        b"x",
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        with pytest.raises(KafkaException) as info:
            future.result(timeout=OP_TIMEOUT_S)
        assert "CLUSTER_AUTHORIZATION_FAILED" in str(info.value) or "uthoriz" in str(info.value)
