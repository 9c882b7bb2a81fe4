//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+);
//! a partition with no commit gets offset -1.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use crate::broker::Broker;
use crate::coordinator::group::CommittedOffset;
use crate::protocol::{count_error, str_bytes, topic_name, RequestContext};
use crate::tenant::acl::operation;

type Rows = Vec<(String, i32, Option<CommittedOffset>)>;
/// Offsets grouped by topic: (topic, [(partition, committed offset)]).
type ByTopic = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// A group's offsets, if the principal may DESCRIBE the group: of the
/// topics it may DESCRIBE (the others are left out of a request for all
/// offsets, and named in the second part when asked for).
/// A fetch's rows, the topics it may not see, and (with `require_stable`)
/// the partitions whose offsets a transaction is still committing.
type Fetched = (Rows, HashSet<String>, HashSet<(String, i32)>);

async fn fetch(
    broker: &Broker,
    context: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, i32)>>,
    require_stable: bool,
) -> Result<Fetched, ResponseError> {
    let (rows, denied) = fetch_rows(broker, context, group_id, wanted).await?;
    // KIP-447: a consumer that needs stable offsets gets
    // UNSTABLE_OFFSET_COMMIT (retriable) while a transaction has offsets
    // pending for the partition, instead of an offset about to change.
    let unstable = if require_stable {
        let pending = broker.groups.pending_txn_offsets(group_id);
        rows.iter()
            .map(|(t, p, _)| (t.clone(), *p))
            .filter(|k| pending.contains(k))
            .collect()
    } else {
        HashSet::new()
    };
    Ok((rows, denied, unstable))
}

/// The code of one partition's row.
fn row_code(
    denied: &HashSet<String>,
    unstable: &HashSet<(String, i32)>,
    topic: &str,
    p: i32,
) -> i16 {
    let code = if denied.contains(topic) {
        ResponseError::TopicAuthorizationFailed.code()
    } else if unstable.contains(&(topic.to_owned(), p)) {
        ResponseError::UnstableOffsetCommit.code()
    } else {
        0
    };
    count_error(ApiKey::OffsetFetch, code);
    code
}

async fn fetch_rows(
    broker: &Broker,
    context: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, i32)>>,
) -> Result<(Rows, HashSet<String>), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let image = broker.image();
    if !context.may_group(&image, operation::DESCRIBE, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let mut verdicts: HashMap<String, bool> = HashMap::new();
    let mut may = |topic: &str| {
        *verdicts
            .entry(topic.to_owned())
            .or_insert_with(|| context.may_topic(&image, operation::DESCRIBE, topic))
    };
    match wanted {
        None => {
            let mut rows = broker.groups.fetch_offsets(group_id, None).await?;
            rows.retain(|(topic, _, _)| may(topic));
            Ok((rows, HashSet::new()))
        }
        Some(wanted) => {
            let (allowed, denied): (Vec<_>, Vec<_>) =
                wanted.into_iter().partition(|(topic, _)| may(topic));
            let mut rows = if allowed.is_empty() && !denied.is_empty() {
                Vec::new()
            } else {
                broker.groups.fetch_offsets(group_id, Some(allowed)).await?
            };
            let denied_topics = denied.iter().map(|(t, _)| t.clone()).collect();
            rows.extend(denied.into_iter().map(|(t, p)| (t, p, None)));
            Ok((rows, denied_topics))
        }
    }
}

/// Groups rows by topic, in first-seen order.
fn by_topic(rows: Rows) -> ByTopic {
    let mut out: ByTopic = Vec::new();
    for (topic, partition, offset) in rows {
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, list)) => list.push((partition, offset)),
            None => out.push((topic, vec![(partition, offset)])),
        }
    }
    out
}

fn fields(o: Option<&CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let version = context.api_version;
    if version >= 8 {
        let mut groups = Vec::new();
        for group in &request.groups {
            let wanted = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
                    .collect()
            });
            let entry = OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone());
            groups.push(
                match fetch(
                    &broker,
                    &context,
                    group.group_id.as_str(),
                    wanted,
                    request.require_stable,
                )
                .await
                {
                    Ok((rows, denied, unstable)) => entry.with_topics(
                        by_topic(rows)
                            .into_iter()
                            .map(|(topic, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&topic))
                                    .with_partitions(
                                        parts
                                            .iter()
                                            .map(|(p, o)| {
                                                let code = row_code(&denied, &unstable, &topic, *p);
                                                let o = if code == 0 { o.as_ref() } else { None };
                                                let (offset, epoch, meta) = fields(o);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(*p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(str_bytes(&meta)))
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(e) => {
                        count_error(ApiKey::OffsetFetch, e.code());
                        entry.with_error_code(e.code())
                    }
                },
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, i32)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    let partition = |p: i32, o: Option<&CommittedOffset>, code: i16| {
        let (offset, epoch, meta) = fields(o);
        let entry = OffsetFetchResponsePartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
            .with_metadata(Some(str_bytes(&meta)))
            .with_error_code(code);
        if version >= 5 {
            entry.with_committed_leader_epoch(epoch)
        } else {
            entry
        }
    };
    let require_stable = version >= 7 && request.require_stable;
    match fetch(
        &broker,
        &context,
        request.group_id.as_str(),
        wanted.clone(),
        require_stable,
    )
    .await
    {
        Ok((rows, denied, unstable)) => {
            let topics = by_topic(rows)
                .into_iter()
                .map(|(topic, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&topic))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|(p, o)| {
                                    let code = row_code(&denied, &unstable, &topic, *p);
                                    partition(*p, if code == 0 { o.as_ref() } else { None }, code)
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        Err(e) => {
            count_error(ApiKey::OffsetFetch, e.code());
            if version >= 2 {
                return OffsetFetchResponse::default().with_error_code(e.code());
            }
            // v1 has no top-level error: every partition carries it.
            let rows = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, p)| (t, p, None))
                .collect();
            let topics = by_topic(rows)
                .into_iter()
                .map(|(topic, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(&topic)))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|(p, _)| partition(*p, None, e.code()))
                                .collect(),
                        )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}
