//! [`MetadataStore`]: what request handlers use to read the metadata image
//! and to change it. Every change becomes a metadata-log record proposed to
//! the controller; the call returns once this node's image includes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::cluster::controller::{decisions, Controller};
use crate::cluster::metadata::{effective_config, MetadataImage};
use crate::cluster::records::{MetadataRecord, ScramCredentialChange};
use crate::cluster::topic_record::TopicRecord;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::tenant::acl::AclBinding;
use crate::tenant::quota::QuotaChange;

/// Reads and changes cluster metadata through the controller.
#[derive(Debug)]
pub struct MetadataStore {
    controller: Arc<Controller>,
    static_config: Arc<BrokerConfig>,
}

fn topic_gone() -> Error {
    Error::api(ResponseError::UnknownTopicOrPartition)
}

impl MetadataStore {
    pub fn new(controller: Arc<Controller>, static_config: Arc<BrokerConfig>) -> Self {
        MetadataStore {
            controller,
            static_config,
        }
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// Creates a topic: with the given replica assignment, or one spread
    /// over the live brokers with `replication_factor` copies.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicRecord>> {
        let image = self.image();
        if image.topic(name).is_some() {
            return Err(Error::api_msg(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let assignments = match assignments {
            Some(assignments) => assignments,
            None => {
                // A random first replica, as Kafka does, so that leaders of
                // many small topics do not all land on one broker.
                let start = (Uuid::new_v4().as_u128() % 1024) as usize;
                decisions::assign_replicas(
                    &image.live_brokers(),
                    partitions,
                    replication_factor,
                    start,
                )?
            }
        };
        let topic = TopicRecord {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            partitions: assignments.len() as i32,
            configs,
        };
        let _ = self
            .controller
            .propose(MetadataRecord::CreateTopic { topic, assignments })
            .await?
            .into_result()?;
        self.image().topic(name).cloned().ok_or_else(topic_gone)
    }

    /// Applies `change` to a topic's record: more partitions and new
    /// configs become their records.
    pub async fn update_topic(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicRecord) -> Result<()>,
    ) -> Result<Arc<TopicRecord>> {
        let image = self.image();
        let current = image.topic(name).cloned().ok_or_else(topic_gone)?;
        let mut next = TopicRecord::clone(&current);
        change(&mut next)?;
        if next.partitions > current.partitions {
            let existing = image.partitions(&current.id);
            let replication_factor = existing.first().map(|p| p.replicas.len()).unwrap_or(1);
            let start = (Uuid::new_v4().as_u128() % 1024) as usize;
            let assignments = decisions::assign_replicas(
                &image.live_brokers(),
                next.partitions - current.partitions,
                replication_factor as i16,
                start,
            )?;
            let _ = self
                .controller
                .propose(MetadataRecord::CreatePartitions {
                    topic_id: current.id,
                    assignments,
                })
                .await?
                .into_result()?;
        }
        if next.configs != current.configs {
            let _ = self
                .controller
                .propose(MetadataRecord::SetTopicConfigs {
                    topic_id: current.id,
                    configs: next.configs.clone(),
                })
                .await?
                .into_result()?;
        }
        self.image().topic(name).cloned().ok_or_else(topic_gone)
    }

    /// Removes a topic; every replica deletes its data when it sees the
    /// record.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicRecord>> {
        let record = self.image().topic(name).cloned().ok_or_else(topic_gone)?;
        let _ = self
            .controller
            .propose(MetadataRecord::DeleteTopic {
                topic_id: record.id,
            })
            .await?
            .into_result()?;
        Ok(record)
    }

    /// Replaces the dynamic broker settings (validated as a whole first),
    /// or only checks them.
    pub async fn set_dynamic_broker_configs(
        &self,
        dynamic: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let _ = effective_config(&self.static_config, &dynamic)?;
        if validate_only {
            return Ok(());
        }
        let _ = self
            .controller
            .propose(MetadataRecord::SetDynamicBrokerConfigs(dynamic))
            .await?
            .into_result()?;
        Ok(())
    }

    /// A block of `count` producer ids never handed out before.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        Ok(self
            .controller
            .propose(MetadataRecord::AllocateProducerIds { count })
            .await?
            .into_result()?
            .value)
    }

    /// Sets and removes SCRAM credentials in one record; one error code
    /// per change, in order (0: applied).
    pub async fn alter_scram_credentials(
        &self,
        changes: Vec<ScramCredentialChange>,
    ) -> Result<Vec<i16>> {
        Ok(self
            .controller
            .propose(MetadataRecord::AlterScramCredentials(changes))
            .await?
            .into_result()?
            .partition_errors)
    }

    /// Adds ACLs in one record; one error code per binding, in order.
    pub async fn create_acls(&self, bindings: Vec<AclBinding>) -> Result<Vec<i16>> {
        Ok(self
            .controller
            .propose(MetadataRecord::CreateAcls(bindings))
            .await?
            .into_result()?
            .partition_errors)
    }

    /// Removes ACLs in one record; one error code per binding, in order
    /// (RESOURCE_NOT_FOUND: another request removed it first).
    pub async fn delete_acls(&self, bindings: Vec<AclBinding>) -> Result<Vec<i16>> {
        Ok(self
            .controller
            .propose(MetadataRecord::DeleteAcls(bindings))
            .await?
            .into_result()?
            .partition_errors)
    }

    /// Sets and removes client quotas in one record; one error code per
    /// change, in order (0: applied).
    pub async fn alter_client_quotas(&self, changes: Vec<QuotaChange>) -> Result<Vec<i16>> {
        Ok(self
            .controller
            .propose(MetadataRecord::AlterClientQuotas(changes))
            .await?
            .into_result()?
            .partition_errors)
    }
}
