//! Transactions in process over the raw protocol: InitProducerId with a
//! transactional id, AddPartitionsToTxn, EndTxn; read_committed fetches
//! stop at the last stable offset and learn the aborted transactions;
//! fencing; TxnOffsetCommit counting only once committed; everything kept
//! across a restart; and two tenants' equal transactional ids kept apart.

mod common;

use bytes::{Bytes, BytesMut};
use common::{name, now_ms, values, Client, Session, TestBroker};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, BrokerId, EndTxnRequest, EndTxnResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A transactional batch of `values` from `pid` at `epoch`, sequences from
/// `first_seq`.
fn txn_batch(pid: i64, epoch: i16, first_seq: i32, values: &[&str]) -> Bytes {
    let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
    common::producer_batch(pid, epoch, first_seq, true, &values)
}

fn init_request(id: &str) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

async fn init(client: &mut Client, id: &str) -> (i16, i64, i16) {
    let response: InitProducerIdResponse = client
        .send(ApiKey::InitProducerId, 4, &init_request(id))
        .await;
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

fn add_request(id: &str, pid: i64, epoch: i16, topic: &str) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![0])])
}

async fn add_partition(client: &mut Client, id: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
    let response: AddPartitionsToTxnResponse = client
        .send(
            ApiKey::AddPartitionsToTxn,
            3,
            &add_request(id, pid, epoch, topic),
        )
        .await;
    response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end(client: &mut Client, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let response: EndTxnResponse = client.send(ApiKey::EndTxn, 3, &request).await;
    response.error_code
}

/// A fetch of partition 0 at `isolation_level`: (high watermark, last
/// stable offset, aborted (producer id, first offset), values).
async fn fetch(
    client: &mut Client,
    topic: &str,
    offset: i64,
    isolation_level: i8,
) -> (i64, i64, Vec<(i64, i64)>, Vec<(i64, String)>) {
    let request = kafka_protocol::messages::FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response: kafka_protocol::messages::FetchResponse =
        client.send(ApiKey::Fetch, 12, &request).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    let records = p.records.clone().unwrap_or_default();
    // Control records are returned too; their values are not data.
    let data = data_values(&records);
    (p.high_watermark, p.last_stable_offset, aborted, data)
}

/// The values of the data records (control records left out).
fn data_values(records: &Bytes) -> Vec<(i64, String)> {
    let mut buf = records.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).expect("decode records");
    let all = values(records);
    let control: Vec<i64> = sets
        .into_iter()
        .flat_map(|s| s.records)
        .filter(|r| r.control)
        .map(|r| r.offset)
        .collect();
    all.into_iter()
        .filter(|(o, _)| !control.contains(o))
        .collect()
}

/// Produces `records` to partition 0 as transactional id `id`; returns
/// (error code, base offset).
async fn produce(client: &mut Client, id: &str, topic: &str, records: Bytes) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let request = kafka_protocol::messages::ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response: kafka_protocol::messages::ProduceResponse =
        client.send(ApiKey::Produce, 9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn latest(client: &mut Client, topic: &str, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = client.send(ApiKey::ListOffsets, 7, &request).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

async fn committed_offset(client: &mut Client, group: &str, topic: &str) -> i64 {
    let (code, offset) = offset_fetch(client, group, topic, false).await;
    assert_eq!(code, 0);
    offset
}

/// OffsetFetch v7 of partition 0: (partition error code, offset).
async fn offset_fetch(
    client: &mut Client,
    group: &str,
    topic: &str,
    require_stable: bool,
) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(topic))
            .with_partition_indexes(vec![0])]));
    let response: OffsetFetchResponse = client.send(ApiKey::OffsetFetch, 7, &request).await;
    assert_eq!(response.error_code, 0);
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

async fn txn_commit_offset(
    client: &mut Client,
    id: &str,
    pid: i64,
    epoch: i16,
    group: &str,
    topic: &str,
    offset: i64,
) {
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(s(group)));
    let response: AddOffsetsToTxnResponse = client.send(ApiKey::AddOffsetsToTxn, 3, &add).await;
    assert_eq!(response.error_code, 0);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let response: TxnOffsetCommitResponse = client.send(ApiKey::TxnOffsetCommit, 3, &commit).await;
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
}

async fn start() -> TestBroker {
    TestBroker::start_with(|c| {
        c.transaction_state_log_num_partitions = 3;
        c.offsets_topic_num_partitions = 3;
    })
    .await
}

#[tokio::test]
async fn read_committed_stops_at_open_transactions_and_skips_aborted_ones() {
    let broker = start().await;
    let mut client = broker.client().await;
    client.create_topic("t", 1).await;

    // The coordinator: this node, once its topic exists.
    let find = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("tx-1")]);
    let response: FindCoordinatorResponse = client.send(ApiKey::FindCoordinator, 4, &find).await;
    assert_eq!(response.coordinators[0].error_code, 0);
    assert_eq!(
        response.coordinators[0].node_id.0,
        broker.running.broker.node_id()
    );

    let (code, pid, epoch) = init(&mut client, "tx-1").await;
    assert_eq!((code, epoch), (0, 0));
    assert_eq!(add_partition(&mut client, "tx-1", pid, epoch, "t").await, 0);
    let batch = txn_batch(pid, epoch, 0, &["a", "b"]);
    assert_eq!(produce(&mut client, "tx-1", "t", batch).await, (0, 0));

    // Open: read_uncommitted sees the records, read_committed stops at 0.
    let (hw, lso, _, seen) = fetch(&mut client, "t", 0, 0).await;
    assert_eq!((hw, seen.len()), (2, 2));
    assert_eq!(lso, 0);
    let (_, lso, aborted, seen) = fetch(&mut client, "t", 0, 1).await;
    assert_eq!((lso, aborted.len(), seen.len()), (0, 0, 0));
    assert_eq!(latest(&mut client, "t", 1).await, 0);
    assert_eq!(latest(&mut client, "t", 0).await, 2);
    // Inside its transaction the producer may not write plain batches.
    let plain = common::batch(&["x"], now_ms(), Compression::None);
    let mut plain = BytesMut::from(&plain[..]);
    plain[43..51].copy_from_slice(&pid.to_be_bytes());
    plain[51..53].copy_from_slice(&epoch.to_be_bytes());
    plain[53..57].copy_from_slice(&2i32.to_be_bytes());
    let crc = crc32c::crc32c(&plain[21..]);
    plain[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        client.produce("t", 0, plain.freeze(), -1).await.0,
        INVALID_TXN_STATE
    );
    // Transactional records without a transactional id are refused, as
    // Kafka refuses them.
    let batch = txn_batch(pid, epoch, 2, &["no-id"]);
    assert_eq!(
        client.produce("t", 0, batch, -1).await.0,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );

    // Abort: the marker lands at 2, the range 0..2 is reported aborted.
    assert_eq!(end(&mut client, "tx-1", pid, epoch, false).await, 0);
    let (hw, lso, aborted, seen) = fetch(&mut client, "t", 0, 1).await;
    assert_eq!((hw, lso), (3, 3));
    assert_eq!(aborted, vec![(pid, 0)]);
    assert_eq!(
        seen.len(),
        2,
        "the records come with the abort to skip them"
    );

    // Commit: visible, and the old abort is not reported past its marker.
    assert_eq!(add_partition(&mut client, "tx-1", pid, epoch, "t").await, 0);
    let batch = txn_batch(pid, epoch, 2, &["c"]);
    assert_eq!(produce(&mut client, "tx-1", "t", batch).await, (0, 3));
    assert_eq!(end(&mut client, "tx-1", pid, epoch, true).await, 0);
    let (hw, lso, aborted, seen) = fetch(&mut client, "t", 3, 1).await;
    assert_eq!((hw, lso), (5, 5));
    assert!(aborted.is_empty(), "{aborted:?}");
    assert_eq!(seen, vec![(3, "c".to_owned())]);

    // A new producer of the same id fences the open transaction: it is
    // aborted under a new epoch and the old epoch is refused.
    assert_eq!(add_partition(&mut client, "tx-1", pid, epoch, "t").await, 0);
    let batch = txn_batch(pid, epoch, 3, &["d"]);
    assert_eq!(produce(&mut client, "tx-1", "t", batch).await, (0, 5));
    let (code, pid2, epoch2) = init(&mut client, "tx-1").await;
    assert_eq!(code, 0);
    assert_eq!(pid2, pid);
    assert!(epoch2 > epoch, "{epoch2}");
    let (hw, lso, aborted, _) = fetch(&mut client, "t", 5, 1).await;
    assert_eq!((hw, lso), (7, 7), "the fenced transaction was aborted");
    assert_eq!(aborted, vec![(pid, 5)]);
    let late = txn_batch(pid, epoch, 4, &["zombie"]);
    assert_eq!(
        produce(&mut client, "tx-1", "t", late).await.0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        end(&mut client, "tx-1", pid, epoch, true).await,
        PRODUCER_FENCED
    );

    // An open transaction, the aborted index and the transactional id's
    // state all survive a restart.
    assert_eq!(
        add_partition(&mut client, "tx-1", pid, epoch2, "t").await,
        0
    );
    let batch = txn_batch(pid, epoch2, 0, &["e"]);
    assert_eq!(produce(&mut client, "tx-1", "t", batch).await, (0, 7));
    drop(client);
    let broker = broker
        .restart(|c| {
            c.transaction_state_log_num_partitions = 3;
            c.offsets_topic_num_partitions = 3;
        })
        .await;
    let mut client = broker.client().await;
    let (_, lso, aborted, _) = fetch(&mut client, "t", 0, 1).await;
    assert_eq!(lso, 7, "still open after the restart");
    assert_eq!(aborted, vec![(pid, 0), (pid, 5)]);
    assert_eq!(end(&mut client, "tx-1", pid, epoch2, true).await, 0);
    let (hw, lso, _, seen) = fetch(&mut client, "t", 7, 1).await;
    assert_eq!((hw, lso), (9, 9));
    assert_eq!(seen, vec![(7, "e".to_owned())]);
    let (code, pid3, epoch3) = init(&mut client, "tx-1").await;
    assert_eq!((code, pid3), (0, pid));
    assert_eq!(epoch3, epoch2 + 1);
    drop(client);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn transactional_offsets_count_once_committed() {
    let broker = start().await;
    let mut client = broker.client().await;
    client.create_topic("in", 1).await;
    let (code, pid, epoch) = init(&mut client, "tx-offsets").await;
    assert_eq!(code, 0);

    txn_commit_offset(&mut client, "tx-offsets", pid, epoch, "g", "in", 42).await;
    assert_eq!(committed_offset(&mut client, "g", "in").await, -1);
    // KIP-447: a consumer asking for stable offsets is told to retry.
    assert_eq!(
        offset_fetch(&mut client, "g", "in", true).await,
        (UNSTABLE_OFFSET_COMMIT, -1)
    );
    assert_eq!(end(&mut client, "tx-offsets", pid, epoch, true).await, 0);
    assert_eq!(committed_offset(&mut client, "g", "in").await, 42);
    assert_eq!(offset_fetch(&mut client, "g", "in", true).await, (0, 42));

    txn_commit_offset(&mut client, "tx-offsets", pid, epoch, "g", "in", 99).await;
    assert_eq!(end(&mut client, "tx-offsets", pid, epoch, false).await, 0);
    assert_eq!(committed_offset(&mut client, "g", "in").await, 42);

    // Left open across a restart, then committed: the replayed pending
    // offsets count.
    txn_commit_offset(&mut client, "tx-offsets", pid, epoch, "g", "in", 77).await;
    drop(client);
    let broker = broker
        .restart(|c| {
            c.transaction_state_log_num_partitions = 3;
            c.offsets_topic_num_partitions = 3;
        })
        .await;
    let mut client = broker.client().await;
    assert_eq!(committed_offset(&mut client, "g", "in").await, 42);
    assert_eq!(end(&mut client, "tx-offsets", pid, epoch, true).await, 0);
    assert_eq!(committed_offset(&mut client, "g", "in").await, 77);
    drop(client);
    let broker = broker
        .restart(|c| {
            c.transaction_state_log_num_partitions = 3;
            c.offsets_topic_num_partitions = 3;
        })
        .await;
    let mut client = broker.client().await;
    assert_eq!(committed_offset(&mut client, "g", "in").await, 77);
    drop(client);
    broker.running.shutdown().await;
}

#[tokio::test]
async fn tenants_transactional_ids_are_apart() {
    let broker = start().await;
    let acme = Session::tenant(&broker, "alice", "acme");
    let globex = Session::tenant(&broker, "bob", "globex");
    let a: InitProducerIdResponse = acme
        .send(ApiKey::InitProducerId, 4, &init_request("tx"))
        .await;
    let g: InitProducerIdResponse = globex
        .send(ApiKey::InitProducerId, 4, &init_request("tx"))
        .await;
    assert_eq!((a.error_code, g.error_code), (0, 0));
    assert_ne!(a.producer_id, g.producer_id, "two transactional ids");
    // acme starting again fences acme's producer only.
    let a2: InitProducerIdResponse = acme
        .send(ApiKey::InitProducerId, 4, &init_request("tx"))
        .await;
    assert_eq!(
        (a2.producer_id, a2.producer_epoch),
        (a.producer_id, a.producer_epoch + 1)
    );
    let end_globex = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_producer_id(g.producer_id)
        .with_producer_epoch(g.producer_epoch)
        .with_committed(false);
    let response: EndTxnResponse = globex.send(ApiKey::EndTxn, 3, &end_globex).await;
    // Not fenced: only its state's error for ending nothing.
    assert_eq!(response.error_code, INVALID_TXN_STATE);
    // acme cannot address globex's id by its internal name: it is mapped
    // into acme's prefix, where no such id exists.
    let sneaky = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("globex.tx")))
        .with_producer_id(g.producer_id)
        .with_producer_epoch(g.producer_epoch)
        .with_committed(false);
    let response: EndTxnResponse = acme.send(ApiKey::EndTxn, 3, &sneaky).await;
    assert_ne!(response.error_code, 0);
    assert_ne!(response.error_code, INVALID_TXN_STATE);
    // The operator sees both under their internal names.
    let operator = Session::operator(&broker);
    for id in ["acme.tx", "globex.tx"] {
        let find = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s(id)]);
        let response: FindCoordinatorResponse =
            operator.send(ApiKey::FindCoordinator, 4, &find).await;
        assert_eq!(response.coordinators[0].error_code, 0, "{id}");
    }
    broker.running.shutdown().await;
}
