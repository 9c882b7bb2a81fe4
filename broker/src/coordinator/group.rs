//! The classic consumer group protocol as a pure state machine: one
//! [`Group`], its members and committed offsets, and the transitions Kafka's
//! `GroupCoordinator` makes (Empty, PreparingRebalance, CompletingRebalance,
//! Stable, Dead).
//!
//! Nothing here blocks, sleeps or talks to the network. Every method takes
//! the current time in milliseconds and returns what the caller must do:
//! answer a waiting JoinGroup or SyncGroup ([`Reply`]), and whether the
//! group's metadata must be written to `__consumer_offsets` before those
//! answers go out. The caller ([`super::group_coordinator`]) owns the
//! waiting requests, the timers (it sleeps until [`Group::next_deadline`]
//! and then calls [`Group::on_timer`]) and the storage.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

/// The protocol type of Kafka consumers, whose subscriptions the broker can
/// read (for OffsetDelete and offset expiry).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    /// The name DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a ListGroups states filter entry (case-insensitive, as Kafka).
    pub fn parse(name: &str) -> Option<GroupState> {
        GroupState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// Broker settings the state machine applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// One protocol a member supports, with its metadata (for consumers: the
/// subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A member of the group.
#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// A JoinGroup of this member is waiting for the join phase to end.
    awaiting_join: bool,
    /// A SyncGroup of this member is waiting for the leader's assignment.
    awaiting_sync: bool,
    /// Sent SyncGroup since the last join phase ended.
    synced: bool,
    last_heartbeat_ms: i64,
    join_order: u64,
}

impl Member {
    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Answers this member's waiting JoinGroup and SyncGroup with `error`.
    fn fail_waiting(&mut self, error: ResponseError, effects: &mut Effects) {
        if std::mem::take(&mut self.awaiting_join) {
            effects.replies.push(Reply::Join(
                self.member_id.clone(),
                JoinResult::error(error, &self.member_id),
            ));
        }
        if std::mem::take(&mut self.awaiting_sync) {
            effects
                .replies
                .push(Reply::Sync(self.member_id.clone(), Err(error)));
        }
    }

    fn expired(&self, now: i64) -> bool {
        !self.awaiting_join
            && !self.awaiting_sync
            && self.last_heartbeat_ms + i64::from(self.session_timeout_ms) <= now
    }
}

/// A JoinGroup request, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a member without an id first gets one and must join
    /// again with it (KIP-394).
    pub require_known_member_id: bool,
}

/// A member of the group as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    pub member_id: String,
    pub members: Vec<JoinMember>,
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// The answer to a SyncGroup: the member's assignment.
pub type SyncResult = Result<Bytes, ResponseError>;

/// An answer for a request that is waiting, by member id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(String, JoinResult),
    Sync(String, SyncResult),
}

/// What a transition asks of the caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Answers to waiting requests.
    pub replies: Vec<Reply>,
    /// Write the group's metadata first; send the replies once written.
    pub persist: bool,
    /// A rebalance started (for the metrics).
    pub rebalances: u32,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.replies.extend(other.replies);
        self.persist |= other.persist;
        self.rebalances += other.rebalances;
    }
}

/// What JoinGroup gets now: an answer, or a wait under a member id.
#[derive(Debug)]
pub enum JoinOutcome {
    Now(JoinResult),
    /// Wait for `Reply::Join` addressed to this member id.
    Wait(String),
}

/// What SyncGroup gets now.
#[derive(Debug)]
pub enum SyncOutcome {
    Now(SyncResult),
    /// Wait for `Reply::Sync` addressed to this member id.
    Wait(String),
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Where the commit sits in `__consumer_offsets`: a commit only
    /// replaces one that is earlier in the log.
    pub log_offset: i64,
}

/// A consumer group and its committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    pub group_id: String,
    state: GroupState,
    /// When the group entered its current state (wall clock).
    pub state_timestamp_ms: i64,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out by a KIP-394 JoinGroup, until they join again
    /// (or their session timeout passes).
    pending_members: HashMap<String, i64>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    next_join_order: u64,
    /// PreparingRebalance: when the join phase ends.
    join_deadline_ms: Option<i64>,
    /// During the initial delayed join of an empty group: how much longer
    /// the delay may be extended while new members keep arriving.
    initial_delay_remaining_ms: Option<i64>,
    new_member_added: bool,
    /// After a join phase: members that have not sent SyncGroup by then
    /// are removed.
    sync_deadline_ms: Option<i64>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    config: GroupConfig,
}

impl Group {
    pub fn new(group_id: &str, config: GroupConfig, now: i64) -> Self {
        Group {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            state_timestamp_ms: now,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            next_join_order: 0,
            join_deadline_ms: None,
            initial_delay_remaining_ms: None,
            new_member_added: false,
            sync_deadline_ms: None,
            offsets: BTreeMap::new(),
            config,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Members in join order (the first is the default leader).
    pub fn members(&self) -> Vec<&Member> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        members
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp_ms = now;
    }

    /// Marks the group deleted: every later request on it fails.
    pub fn mark_dead(&mut self, now: i64) -> Effects {
        let mut effects = Effects::default();
        for member in self.members.values_mut() {
            member.fail_waiting(ResponseError::CoordinatorNotAvailable, &mut effects);
        }
        self.members.clear();
        self.pending_members.clear();
        self.static_members.clear();
        self.transition(GroupState::Dead, now);
        effects
    }

    /// Restores a member from `__consumer_offsets` (the group is loaded as
    /// Stable with its members, whose session timers start now).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        generation_id: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        leader_id: Option<String>,
        state_timestamp_ms: i64,
        members: Vec<(Member, Option<String>)>,
        now: i64,
    ) {
        self.generation_id = generation_id;
        self.protocol_type = protocol_type;
        self.protocol_name = protocol_name;
        self.leader_id = leader_id;
        self.members.clear();
        self.static_members.clear();
        for (mut member, instance) in members {
            member.last_heartbeat_ms = now;
            member.join_order = self.next_join_order;
            member.synced = true;
            self.next_join_order += 1;
            if let Some(instance) = instance {
                let _ = self
                    .static_members
                    .insert(instance, member.member_id.clone());
            }
            let _ = self.members.insert(member.member_id.clone(), member);
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state_timestamp_ms = state_timestamp_ms;
    }

    /// A member for [`Group::restore`].
    #[allow(clippy::too_many_arguments)]
    pub fn restored_member(
        member_id: String,
        group_instance_id: Option<String>,
        client_id: String,
        client_host: String,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        protocol: Protocol,
        assignment: Bytes,
    ) -> Member {
        Member {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocols: vec![protocol],
            assignment,
            awaiting_join: false,
            awaiting_sync: false,
            synced: true,
            last_heartbeat_ms: 0,
            join_order: 0,
        }
    }

    /// The longest rebalance timeout of the members: how long a join phase
    /// waits for everyone.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports, in the first member's order of
    /// preference.
    fn candidate_protocols(&self, extra: Option<&[Protocol]>) -> Vec<String> {
        let mut lists: Vec<&[Protocol]> = self
            .members
            .values()
            .map(|m| m.protocols.as_slice())
            .collect();
        if let Some(extra) = extra {
            lists.push(extra);
        }
        let Some(first) = lists.first() else {
            return Vec::new();
        };
        first
            .iter()
            .map(|p| p.name.clone())
            .filter(|name| lists.iter().all(|l| l.iter().any(|p| &p.name == name)))
            .collect()
    }

    /// Whether a member with these protocols may join.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && !self.candidate_protocols(Some(protocols)).is_empty()
    }

    /// The protocol the members vote for: each votes for its most preferred
    /// candidate; most votes wins, ties go to the earlier candidate.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None);
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name))
            {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&String, usize)> = None;
        for candidate in &candidates {
            let count = votes.get(candidate.as_str()).copied().unwrap_or(0);
            if best.is_none_or(|(_, n)| count > n) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.clone())
    }

    /// The fencing check for a request naming a static instance id.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        match instance.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    fn current_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members()
            .into_iter()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members {
                self.current_members()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// JoinGroup. `fresh_id` is a new unique suffix for a member id, used
    /// when the member has none yet.
    pub fn join(&mut self, p: JoinParams, now: i64, fresh_id: &str) -> (JoinOutcome, Effects) {
        let member_id = p.member_id.clone();
        let error = |e| {
            (
                JoinOutcome::Now(JoinResult::error(e, &member_id)),
                Effects::default(),
            )
        };
        if p.session_timeout_ms < self.config.min_session_timeout_ms
            || p.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return error(ResponseError::InvalidSessionTimeout);
        }
        if self.is(GroupState::Dead) {
            return error(ResponseError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&p.protocol_type, &p.protocols) {
            return error(ResponseError::InconsistentGroupProtocol);
        }
        if p.member_id.is_empty() {
            return self.join_unknown(p, now, fresh_id);
        }
        if self.pending_members.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_member_and_rebalance(p, id, now);
        }
        if self.fenced(&p.member_id, p.group_instance_id.as_deref()) {
            return error(ResponseError::FencedInstanceId);
        }
        let Some(member) = self.members.get(&p.member_id) else {
            return error(ResponseError::UnknownMemberId);
        };
        let same_protocols = member.protocols == p.protocols;
        let is_leader = self.leader_id.as_deref() == Some(p.member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                let id = p.member_id.clone();
                self.update_member(&p, now);
                let effects = self.try_complete_join(now);
                (JoinOutcome::Wait(id), effects)
            }
            GroupState::CompletingRebalance if same_protocols => {
                // The member lost the answer: give it again.
                (
                    JoinOutcome::Now(self.join_result(&p.member_id, is_leader)),
                    Effects::default(),
                )
            }
            GroupState::Stable if same_protocols && !is_leader => (
                JoinOutcome::Now(self.join_result(&p.member_id, false)),
                Effects::default(),
            ),
            GroupState::CompletingRebalance | GroupState::Stable => {
                let id = p.member_id.clone();
                self.update_member(&p, now);
                let mut effects = self.prepare_rebalance(now);
                effects.merge(self.try_complete_join(now));
                (JoinOutcome::Wait(id), effects)
            }
            GroupState::Empty | GroupState::Dead => error(ResponseError::UnknownMemberId),
        }
    }

    fn join_unknown(&mut self, p: JoinParams, now: i64, fresh_id: &str) -> (JoinOutcome, Effects) {
        if let Some(instance) = p.group_instance_id.clone() {
            let new_id = format!("{instance}-{fresh_id}");
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(p, &old_id, new_id, now);
            }
            if self.members.len() >= self.config.max_size {
                return (
                    JoinOutcome::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, "")),
                    Effects::default(),
                );
            }
            return self.add_member_and_rebalance(p, new_id, now);
        }
        if self.members.len() + self.pending_members.len() >= self.config.max_size {
            return (
                JoinOutcome::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, "")),
                Effects::default(),
            );
        }
        let new_id = format!("{}-{fresh_id}", p.client_id);
        if p.require_known_member_id {
            let _ = self
                .pending_members
                .insert(new_id.clone(), now + i64::from(p.session_timeout_ms));
            return (
                JoinOutcome::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id)),
                Effects::default(),
            );
        }
        self.add_member_and_rebalance(p, new_id, now)
    }

    fn add_member_and_rebalance(
        &mut self,
        p: JoinParams,
        member_id: String,
        now: i64,
    ) -> (JoinOutcome, Effects) {
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        if let Some(instance) = &p.group_instance_id {
            let _ = self
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: p.group_instance_id.clone(),
            client_id: p.client_id,
            client_host: p.client_host,
            rebalance_timeout_ms: p.rebalance_timeout_ms,
            session_timeout_ms: p.session_timeout_ms,
            protocols: p.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            synced: false,
            last_heartbeat_ms: now,
            join_order: self.next_join_order,
        };
        self.next_join_order += 1;
        let _ = self.members.insert(member_id.clone(), member);
        if self.is(GroupState::PreparingRebalance) && self.initial_delay_remaining_ms.is_some() {
            self.new_member_added = true;
        }
        let mut effects = self.prepare_rebalance(now);
        effects.merge(self.try_complete_join(now));
        (JoinOutcome::Wait(member_id), effects)
    }

    /// A static member joined again without its member id (it restarted):
    /// it takes over its old identity under a new id, and the old id is
    /// fenced. In a Stable group with unchanged protocols this causes no
    /// rebalance (KIP-345).
    fn replace_static_member(
        &mut self,
        p: JoinParams,
        old_id: &str,
        new_id: String,
        now: i64,
    ) -> (JoinOutcome, Effects) {
        let Some(mut member) = self.members.remove(old_id) else {
            return (
                JoinOutcome::Now(JoinResult::error(ResponseError::UnknownMemberId, "")),
                Effects::default(),
            );
        };
        let mut effects = Effects::default();
        // Requests still waiting under the old id are fenced.
        member.fail_waiting(ResponseError::FencedInstanceId, &mut effects);
        let instance = p.group_instance_id.clone().unwrap_or_default();
        member.member_id = new_id.clone();
        member.client_id = p.client_id.clone();
        member.client_host = p.client_host.clone();
        member.last_heartbeat_ms = now;
        let _ = self.static_members.insert(instance, new_id.clone());
        let was_leader = self.leader_id.as_deref() == Some(old_id);
        if was_leader {
            self.leader_id = Some(new_id.clone());
        }
        let protocols_changed = member.protocols != p.protocols;
        member.protocols = p.protocols.clone();
        member.session_timeout_ms = p.session_timeout_ms;
        member.rebalance_timeout_ms = p.rebalance_timeout_ms;
        let _ = self.members.insert(new_id.clone(), member);
        match self.state {
            GroupState::Stable
                if !protocols_changed && self.select_protocol() == self.protocol_name =>
            {
                // Persist the new member id; the answer waits for it.
                let mut result = self.join_result(&new_id, was_leader);
                result.skip_assignment = was_leader;
                effects.persist = true;
                // Delivered through the waiter, after the write.
                effects.replies.push(Reply::Join(new_id.clone(), result));
                (JoinOutcome::Wait(new_id), effects)
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = true;
                }
                effects.merge(self.try_complete_join(now));
                (JoinOutcome::Wait(new_id), effects)
            }
            _ => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = true;
                }
                effects.merge(self.prepare_rebalance(now));
                effects.merge(self.try_complete_join(now));
                (JoinOutcome::Wait(new_id), effects)
            }
        }
    }

    fn update_member(&mut self, p: &JoinParams, now: i64) {
        if let Some(member) = self.members.get_mut(&p.member_id) {
            member.protocols = p.protocols.clone();
            member.session_timeout_ms = p.session_timeout_ms;
            member.rebalance_timeout_ms = p.rebalance_timeout_ms;
            member.client_id = p.client_id.clone();
            member.client_host = p.client_host.clone();
            member.awaiting_join = true;
            member.last_heartbeat_ms = now;
        }
    }

    /// Starts a rebalance if the group is not already in one.
    fn prepare_rebalance(&mut self, now: i64) -> Effects {
        let mut effects = Effects::default();
        match self.state {
            GroupState::PreparingRebalance | GroupState::Dead => return effects,
            GroupState::CompletingRebalance => {
                // The leader's assignment for this generation will never
                // come: the waiting members must join again.
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    if std::mem::take(&mut member.awaiting_sync) {
                        effects.replies.push(Reply::Sync(
                            member.member_id.clone(),
                            Err(ResponseError::RebalanceInProgress),
                        ));
                    }
                }
            }
            GroupState::Empty | GroupState::Stable => {}
        }
        let rebalance_timeout = self.rebalance_timeout_ms();
        if self.is(GroupState::Empty) {
            // Kafka's initial delayed join: wait a little for more members
            // so a starting group does not rebalance once per member.
            let delay = self
                .config
                .initial_rebalance_delay_ms
                .min(rebalance_timeout);
            self.join_deadline_ms = Some(now + delay);
            self.initial_delay_remaining_ms =
                Some((rebalance_timeout - self.config.initial_rebalance_delay_ms).max(0));
            self.new_member_added = false;
        } else {
            self.join_deadline_ms = Some(now + rebalance_timeout);
            self.initial_delay_remaining_ms = None;
        }
        self.sync_deadline_ms = None;
        self.transition(GroupState::PreparingRebalance, now);
        effects.rebalances = 1;
        effects
    }

    /// Ends the join phase early once every member has joined.
    fn try_complete_join(&mut self, now: i64) -> Effects {
        let all_joined =
            self.members.values().all(|m| m.awaiting_join) && self.pending_members.is_empty();
        if self.is(GroupState::PreparingRebalance)
            && self.initial_delay_remaining_ms.is_none()
            && all_joined
        {
            self.complete_join(now)
        } else {
            Effects::default()
        }
    }

    /// The join phase is over: drop members that did not join, start the
    /// next generation, answer every waiting JoinGroup.
    fn complete_join(&mut self, now: i64) -> Effects {
        let mut effects = Effects::default();
        self.join_deadline_ms = None;
        self.initial_delay_remaining_ms = None;
        self.new_member_added = false;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            let _ = self.members.remove(&id);
        }
        self.pending_members.clear();
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.transition(GroupState::Empty, now);
            effects.persist = true;
            return effects;
        }
        self.protocol_name = self.select_protocol();
        let leader_present = self
            .leader_id
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l));
        if !leader_present {
            self.leader_id = self.members().first().map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now);
        self.sync_deadline_ms = Some(now + self.rebalance_timeout_ms());
        let leader = self.leader_id.clone().unwrap_or_default();
        let all = self.current_members();
        let mut answered = Vec::new();
        for member in self.members.values_mut() {
            member.synced = false;
            member.last_heartbeat_ms = now;
            if std::mem::take(&mut member.awaiting_join) {
                answered.push(member.member_id.clone());
            }
        }
        answered.sort_by_key(|id| self.members.get(id).map(|m| m.join_order));
        for id in answered {
            let mut result = self.join_result(&id, false);
            if id == leader {
                result.members = all.clone();
            }
            effects.replies.push(Reply::Join(id, result));
        }
        effects
    }

    /// SyncGroup. `assignments` is the leader's, empty from followers.
    /// The arguments are the request's fields, as Kafka's handler takes them.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> (SyncOutcome, Effects) {
        let now_err = |e| (SyncOutcome::Now(Err(e)), Effects::default());
        if self.is(GroupState::Dead) {
            return now_err(ResponseError::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance) {
            return now_err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return now_err(ResponseError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return now_err(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol_name.as_deref())
        {
            return now_err(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty => now_err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => now_err(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let is_leader = self.leader_id.as_deref() == Some(member_id);
                if let Some(member) = self.members.get_mut(member_id) {
                    member.awaiting_sync = true;
                    member.synced = true;
                    member.last_heartbeat_ms = now;
                }
                let mut effects = Effects::default();
                if is_leader {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = given.remove(&member.member_id).unwrap_or_default();
                        if std::mem::take(&mut member.awaiting_sync) {
                            effects.replies.push(Reply::Sync(
                                member.member_id.clone(),
                                Ok(member.assignment.clone()),
                            ));
                        }
                    }
                    self.transition(GroupState::Stable, now);
                    effects.persist = true;
                }
                (SyncOutcome::Wait(member_id.to_owned()), effects)
            }
            GroupState::Stable => {
                let member = self.members.get_mut(member_id).expect("checked above");
                member.synced = true;
                member.last_heartbeat_ms = now;
                (
                    SyncOutcome::Now(Ok(member.assignment.clone())),
                    Effects::default(),
                )
            }
            GroupState::Dead => now_err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance) {
            return Err(ResponseError::FencedInstanceId);
        }
        let state = self.state;
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        match state {
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_heartbeat_ms = now;
                Ok(())
            }
            GroupState::PreparingRebalance => {
                member.last_heartbeat_ms = now;
                Err(ResponseError::RebalanceInProgress)
            }
        }
    }

    /// LeaveGroup for each `(member id, instance id)`; one result each.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: i64,
    ) -> (Vec<Result<(), ResponseError>>, Effects) {
        let mut effects = Effects::default();
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance) in leaving {
            let result = if self.is(GroupState::Dead) {
                Err(ResponseError::CoordinatorNotAvailable)
            } else if let Some(instance) = instance {
                match self.static_members.get(instance).cloned() {
                    Some(current) if !member_id.is_empty() && *member_id != current => {
                        Err(ResponseError::FencedInstanceId)
                    }
                    Some(current) => {
                        effects.merge(self.remove_member(&current, now));
                        Ok(())
                    }
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else if self.pending_members.remove(member_id).is_some() {
                effects.merge(self.try_complete_join(now));
                Ok(())
            } else if self.members.contains_key(member_id) {
                effects.merge(self.remove_member(member_id, now));
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
            results.push(result);
        }
        (results, effects)
    }

    fn remove_member(&mut self, member_id: &str, now: i64) -> Effects {
        let mut effects = Effects::default();
        let Some(mut member) = self.members.remove(member_id) else {
            return effects;
        };
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                let _ = self.static_members.remove(instance);
            }
        }
        member.fail_waiting(ResponseError::UnknownMemberId, &mut effects);
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members().first().map(|m| m.member_id.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                effects.merge(self.prepare_rebalance(now));
                effects.merge(self.try_complete_join(now));
            }
            GroupState::PreparingRebalance => effects.merge(self.try_complete_join(now)),
            GroupState::Empty | GroupState::Dead => {}
        }
        effects
    }

    /// The next time [`Group::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && !m.awaiting_sync)
            .map(|m| m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
        let join = self
            .join_deadline_ms
            .filter(|_| self.is(GroupState::PreparingRebalance));
        let sync = self.sync_deadline_ms.filter(|_| {
            matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
        });
        sessions
            .chain(self.pending_members.values().copied())
            .chain(join)
            .chain(sync)
            .min()
    }

    /// Expires sessions and ends timed-out phases.
    pub fn on_timer(&mut self, now: i64) -> Effects {
        let mut effects = Effects::default();
        if self.is(GroupState::Dead) {
            return effects;
        }
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, &deadline)| deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            let _ = self.pending_members.remove(&id);
            effects.merge(self.try_complete_join(now));
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            effects.merge(self.remove_member(&id, now));
        }
        if self.is(GroupState::PreparingRebalance)
            && self.join_deadline_ms.is_some_and(|d| d <= now)
        {
            match self.initial_delay_remaining_ms {
                Some(remaining) if self.new_member_added && remaining > 0 => {
                    // More members arrived during the delay: wait once more.
                    let delay = self.config.initial_rebalance_delay_ms.min(remaining);
                    self.join_deadline_ms = Some(now + delay);
                    self.initial_delay_remaining_ms =
                        Some((remaining - self.config.initial_rebalance_delay_ms).max(0));
                    self.new_member_added = false;
                }
                _ => effects.merge(self.complete_join(now)),
            }
        }
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && self.sync_deadline_ms.is_some_and(|d| d <= now)
        {
            self.sync_deadline_ms = None;
            let unsynced: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.synced)
                .map(|m| m.member_id.clone())
                .collect();
            for id in unsynced {
                effects.merge(self.remove_member(&id, now));
            }
        }
        effects
    }

    /// Whether an OffsetCommit from this member and generation is allowed
    /// (KafkaApis and GroupCoordinator's checks, in their order).
    pub fn validate_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id >= 0 || !member_id.is_empty() || instance.is_some() {
            if self.fenced(member_id, instance) {
                return Err(ResponseError::FencedInstanceId);
            }
            let Some(member) = self.members.get_mut(member_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
            if self.state == GroupState::CompletingRebalance {
                return Err(ResponseError::RebalanceInProgress);
            }
            member.last_heartbeat_ms = now;
            Ok(())
        } else if !self.is(GroupState::Empty) {
            // Only members commit for a group that has members.
            Err(ResponseError::UnknownMemberId)
        } else {
            Ok(())
        }
    }

    /// Applies a committed offset if it is newer in the log than what is
    /// there (commits complete out of order; the log order decides).
    pub fn apply_commit(&mut self, topic: &str, partition: i32, committed: CommittedOffset) {
        let key = (topic.to_owned(), partition);
        let newer = self
            .offsets
            .get(&key)
            .is_none_or(|old| old.log_offset <= committed.log_offset);
        if newer {
            let _ = self.offsets.insert(key, committed);
        }
    }

    /// Topics the consumer members subscribe to, read from their
    /// subscriptions (the consumer protocol). `None` when the group is not
    /// a consumer group or a subscription does not parse.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(parse_subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Offsets that have expired at `now` (Kafka's rules: for an empty
    /// group, `retention_ms` after it became empty; for a group that only
    /// stores offsets, after the commit; for a consumer group, offsets of
    /// topics it no longer subscribes to, after the commit).
    pub fn expired_offsets(&self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let base = |o: &CommittedOffset| -> i64 {
            if self.is(GroupState::Empty) && self.protocol_type.is_some() {
                self.state_timestamp_ms
            } else {
                o.commit_timestamp_ms
            }
        };
        let subscribed = if self.is(GroupState::Empty) || self.protocol_type.is_none() {
            None
        } else {
            match self.subscribed_topics() {
                Some(topics) => Some(topics),
                None => return Vec::new(),
            }
        };
        self.offsets
            .iter()
            .filter(|((topic, _), o)| {
                subscribed.as_ref().is_none_or(|s| !s.contains(topic))
                    && base(o).saturating_add(retention_ms) <= now
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The topics of a consumer protocol subscription (ConsumerProtocolSubscription,
/// any version: version i16, then an array of strings).
pub fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let slice = metadata.get(*at..*at + n)?;
        *at += n;
        Some(slice)
    };
    let _version = take(&mut at, 0)?;
    if metadata.len() < 2 {
        return None;
    }
    let count = i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
    if count < 0 {
        return Some(Vec::new());
    }
    let mut topics = Vec::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
        let bytes = take(&mut at, usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(bytes.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: i32 = 10_000;
    const REBALANCE: i32 = 30_000;

    fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    fn params(member_id: &str, protocols: &[&str]) -> JoinParams {
        JoinParams {
            member_id: member_id.to_owned(),
            group_instance_id: None,
            client_id: "client".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            protocols: protocols
                .iter()
                .map(|p| Protocol {
                    name: (*p).to_owned(),
                    metadata: Bytes::from(format!("meta-{p}")),
                })
                .collect(),
            require_known_member_id: true,
        }
    }

    fn joins(effects: &Effects) -> Vec<&JoinResult> {
        effects
            .replies
            .iter()
            .filter_map(|r| match r {
                Reply::Join(_, j) => Some(j),
                Reply::Sync(..) => None,
            })
            .collect()
    }

    /// Joins a new member through the KIP-394 round; returns its id and
    /// the effects of the second join.
    fn join_new(g: &mut Group, now: i64, fresh: &str) -> (String, JoinOutcome, Effects) {
        let (first, _) = g.join(params("", &["range"]), now, fresh);
        let JoinOutcome::Now(result) = first else {
            panic!("first join must answer at once")
        };
        assert_eq!(result.error, Some(ResponseError::MemberIdRequired));
        let id = result.member_id.clone();
        let (outcome, effects) = g.join(params(&id, &["range"]), now, "unused");
        (id, outcome, effects)
    }

    /// Runs the timer at `now` until the join phase ends (a zero initial
    /// delay still takes one more tick per member that arrived during it).
    fn end_join_phase(g: &mut Group, now: i64) -> Effects {
        for _ in 0..10 {
            let effects = g.on_timer(now);
            if !effects.replies.is_empty() {
                return effects;
            }
        }
        panic!("join phase did not end");
    }

    /// A group of `n` members, Stable after the leader's sync.
    fn stable_group(n: usize) -> (Group, Vec<String>) {
        let mut g = Group::new("g", config(), 0);
        let mut ids = Vec::new();
        for i in 0..n {
            let (id, _, _) = join_new(&mut g, 0, &format!("m{i}"));
            ids.push(id);
        }
        // Initial delay 0: the join phase ends at the first timer.
        let effects = end_join_phase(&mut g, 0);
        assert_eq!(joins(&effects).len(), n);
        assert!(g.is(GroupState::CompletingRebalance));
        let leader = g.leader_id.clone().unwrap();
        let assignments = ids
            .iter()
            .map(|id| (id.clone(), Bytes::from(format!("assign-{id}"))))
            .collect();
        let (_, effects) = g.sync(1, &leader, None, None, None, assignments, 1);
        assert!(effects.persist);
        assert!(g.is(GroupState::Stable));
        (g, ids)
    }

    #[test]
    fn member_id_required_then_join_completes_after_initial_delay() {
        let mut g = Group::new(
            "g",
            GroupConfig {
                initial_rebalance_delay_ms: 3000,
                ..GroupConfig::default()
            },
            0,
        );
        let (id, outcome, effects) = join_new(&mut g, 0, "a");
        assert!(matches!(outcome, JoinOutcome::Wait(ref w) if *w == id));
        assert_eq!(effects.rebalances, 1);
        assert!(g.is(GroupState::PreparingRebalance));
        // Nothing happens before the delay passes.
        assert_eq!(g.next_deadline(), Some(3000));
        assert!(g.on_timer(2999).replies.is_empty());
        let effects = g.on_timer(3000);
        let results = joins(&effects);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].generation_id, 1);
        assert_eq!(results[0].leader_id, id);
        assert_eq!(results[0].protocol_name.as_deref(), Some("range"));
        assert_eq!(results[0].members.len(), 1);
        assert!(g.is(GroupState::CompletingRebalance));
    }

    #[test]
    fn initial_delay_extends_while_members_arrive() {
        let mut g = Group::new(
            "g",
            GroupConfig {
                initial_rebalance_delay_ms: 3000,
                ..GroupConfig::default()
            },
            0,
        );
        let _ = join_new(&mut g, 0, "a");
        let _ = join_new(&mut g, 2000, "b");
        // A member came during the delay: it is extended once more.
        assert!(g.on_timer(3000).replies.is_empty());
        assert_eq!(g.next_deadline(), Some(6000));
        assert_eq!(joins(&g.on_timer(6000)).len(), 2);
    }

    #[test]
    fn leader_gets_members_followers_do_not_and_sync_hands_out_assignments() {
        let mut g = Group::new("g", config(), 0);
        let (a, _, _) = join_new(&mut g, 0, "a");
        let (b, _, _) = join_new(&mut g, 0, "b");
        let effects = end_join_phase(&mut g, 0);
        let results = joins(&effects);
        let leader = results.iter().find(|r| r.member_id == a).unwrap();
        let follower = results.iter().find(|r| r.member_id == b).unwrap();
        assert_eq!(leader.leader_id, a);
        assert_eq!(leader.members.len(), 2);
        assert!(follower.members.is_empty());
        // The follower waits for the leader.
        let (outcome, effects) = g.sync(1, &b, None, None, None, vec![], 1);
        assert!(matches!(outcome, SyncOutcome::Wait(_)));
        assert!(effects.replies.is_empty());
        let (_, effects) = g.sync(
            1,
            &a,
            None,
            Some("consumer"),
            Some("range"),
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            2,
        );
        assert!(effects.persist);
        assert!(effects
            .replies
            .contains(&Reply::Sync(b.clone(), Ok(Bytes::from_static(b"B")))));
        assert!(effects
            .replies
            .contains(&Reply::Sync(a.clone(), Ok(Bytes::from_static(b"A")))));
        assert!(g.is(GroupState::Stable));
        // A late sync in Stable answers at once.
        let (outcome, _) = g.sync(1, &b, None, None, None, vec![], 3);
        assert!(matches!(outcome, SyncOutcome::Now(Ok(ref x)) if x == &Bytes::from_static(b"B")));
    }

    #[test]
    fn fencing_errors_follow_kafka() {
        let (mut g, ids) = stable_group(2);
        assert_eq!(
            g.heartbeat(1, "nobody", None, 5),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.heartbeat(0, &ids[0], None, 5),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(g.heartbeat(1, &ids[0], None, 5), Ok(()));
        let (outcome, _) = g.sync(7, &ids[0], None, None, None, vec![], 5);
        assert!(matches!(
            outcome,
            SyncOutcome::Now(Err(ResponseError::IllegalGeneration))
        ));
        let (outcome, _) = g.sync(1, &ids[0], None, Some("connect"), None, vec![], 5);
        assert!(matches!(
            outcome,
            SyncOutcome::Now(Err(ResponseError::InconsistentGroupProtocol))
        ));
        let (outcome, _) = g.join(params("stranger", &["range"]), 5, "x");
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult {
                error: Some(ResponseError::UnknownMemberId),
                ..
            })
        ));
        let mut bad = params("", &["range"]);
        bad.session_timeout_ms = 1;
        let (outcome, _) = g.join(bad, 5, "x");
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult {
                error: Some(ResponseError::InvalidSessionTimeout),
                ..
            })
        ));
        let (outcome, _) = g.join(params("", &["roundrobin"]), 5, "x");
        assert!(matches!(
            outcome,
            JoinOutcome::Now(JoinResult {
                error: Some(ResponseError::InconsistentGroupProtocol),
                ..
            })
        ));
    }

    #[test]
    fn heartbeat_during_rebalance_says_rebalance_in_progress() {
        let (mut g, ids) = stable_group(2);
        // A third member triggers a rebalance.
        let _ = join_new(&mut g, 10, "c");
        assert!(g.is(GroupState::PreparingRebalance));
        assert_eq!(
            g.heartbeat(1, &ids[0], None, 11),
            Err(ResponseError::RebalanceInProgress)
        );
        let (outcome, _) = g.sync(1, &ids[0], None, None, None, vec![], 11);
        assert!(matches!(
            outcome,
            SyncOutcome::Now(Err(ResponseError::RebalanceInProgress))
        ));
        // Commits with the current generation are still allowed.
        assert_eq!(g.validate_commit(1, &ids[0], None, 11), Ok(()));
        // The old members rejoin; the join phase completes at once.
        let (_, _) = g.join(params(&ids[0], &["range"]), 12, "x");
        let (_, effects) = g.join(params(&ids[1], &["range"]), 12, "x");
        assert_eq!(joins(&effects).len(), 3);
        assert_eq!(g.generation_id, 2);
    }

    #[test]
    fn session_timeout_removes_a_silent_member_and_rebalances() {
        let (mut g, ids) = stable_group(2);
        let _ = g.heartbeat(1, &ids[0], None, 9_000);
        // ids[1] was last heard from when the join phase ended, at 0.
        assert_eq!(g.next_deadline(), Some(10_000));
        let effects = g.on_timer(10_000);
        assert_eq!(effects.rebalances, 1);
        assert!(g.member(&ids[1]).is_none());
        assert!(g.is(GroupState::PreparingRebalance));
        // The survivor rejoins and becomes the whole group.
        let (_, effects) = g.join(params(&ids[0], &["range"]), 10_002, "x");
        let results = joins(&effects);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].leader_id, ids[0]);
        assert_eq!(results[0].generation_id, 2);
    }

    #[test]
    fn rebalance_timeout_drops_members_that_do_not_rejoin() {
        let (mut g, ids) = stable_group(2);
        let _ = g.join(params(&ids[0], &["range", "roundrobin"]), 100, "x");
        assert!(g.is(GroupState::PreparingRebalance));
        // ids[1] keeps heartbeating but never rejoins.
        let _ = g.heartbeat(1, &ids[1], None, 20_000);
        let effects = g.on_timer(100 + i64::from(REBALANCE));
        let results = joins(&effects);
        assert_eq!(results.len(), 1);
        assert!(g.member(&ids[1]).is_none());
        assert_eq!(g.members().len(), 1);
    }

    #[test]
    fn leave_group_rebalances_and_last_leave_empties_the_group() {
        let (mut g, ids) = stable_group(2);
        let (results, effects) = g.leave(&[(ids[1].clone(), None)], 50);
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(effects.rebalances, 1);
        let (results, _) = g.leave(&[("ghost".into(), None)], 51);
        assert_eq!(results, vec![Err(ResponseError::UnknownMemberId)]);
        let (results, effects) = g.leave(&[(ids[0].clone(), None)], 52);
        assert_eq!(results, vec![Ok(())]);
        // No member left to wait for: the group is Empty now, persisted.
        assert!(effects.persist);
        assert!(g.is(GroupState::Empty));
        assert_eq!(g.generation_id, 2);
    }

    #[test]
    fn static_member_rejoin_in_stable_group_causes_no_rebalance() {
        let mut g = Group::new("g", config(), 0);
        let mut p = params("", &["range"]);
        p.group_instance_id = Some("poller-1".into());
        let (outcome, _) = g.join(p.clone(), 0, "u1");
        let JoinOutcome::Wait(old_id) = outcome else {
            panic!("static members join without the KIP-394 round")
        };
        assert_eq!(old_id, "poller-1-u1");
        let _ = end_join_phase(&mut g, 0);
        let _ = g.sync(
            1,
            &old_id,
            Some("poller-1"),
            None,
            None,
            vec![(old_id.clone(), Bytes::from_static(b"X"))],
            1,
        );
        assert!(g.is(GroupState::Stable));
        // The process restarts and joins again without its member id.
        let (outcome, effects) = g.join(p.clone(), 5_000, "u2");
        let JoinOutcome::Wait(new_id) = outcome else {
            panic!()
        };
        assert_eq!(new_id, "poller-1-u2");
        assert_eq!(effects.rebalances, 0);
        assert!(effects.persist);
        let results = joins(&effects);
        assert_eq!(results[0].generation_id, 1);
        assert!(results[0].skip_assignment);
        assert!(g.is(GroupState::Stable));
        // Its assignment is kept; the old id is fenced.
        let (outcome, _) = g.sync(1, &new_id, Some("poller-1"), None, None, vec![], 5_001);
        assert!(matches!(outcome, SyncOutcome::Now(Ok(ref a)) if a == &Bytes::from_static(b"X")));
        assert_eq!(
            g.heartbeat(1, &old_id, Some("poller-1"), 5_002),
            Err(ResponseError::FencedInstanceId)
        );
    }

    #[test]
    fn commits_are_validated_like_kafka() {
        let (mut g, ids) = stable_group(1);
        assert_eq!(
            g.validate_commit(-1, "", None, 5),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_commit(9, &ids[0], None, 5),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(g.validate_commit(1, &ids[0], None, 5), Ok(()));
        let mut empty = Group::new("standalone", config(), 0);
        assert_eq!(empty.validate_commit(-1, "", None, 5), Ok(()));
    }

    #[test]
    fn later_commit_in_the_log_wins() {
        let mut g = Group::new("g", config(), 0);
        let commit = |offset, log_offset| CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
            log_offset,
        };
        g.apply_commit("t", 0, commit(10, 5));
        g.apply_commit("t", 0, commit(7, 3));
        assert_eq!(g.offsets[&("t".to_owned(), 0)].offset, 10);
    }

    #[test]
    fn protocol_selection_votes() {
        let mut g = Group::new("g", config(), 0);
        let mut a = params("", &["cooperative-sticky", "range"]);
        a.require_known_member_id = false;
        let mut b = params("", &["range", "cooperative-sticky"]);
        b.require_known_member_id = false;
        let mut c = a.clone();
        c.client_id = "c".into();
        let _ = g.join(a, 0, "1");
        let _ = g.join(b, 0, "2");
        let _ = g.join(c, 0, "3");
        assert_eq!(g.select_protocol().as_deref(), Some("cooperative-sticky"));
    }

    #[test]
    fn offsets_of_an_empty_group_expire_after_retention() {
        let (mut g, ids) = stable_group(1);
        g.apply_commit(
            "t",
            0,
            CommittedOffset {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 10,
                log_offset: 0,
            },
        );
        assert!(
            g.expired_offsets(1_000_000, 100).is_empty(),
            "subscription unknown: kept"
        );
        let _ = g.leave(&[(ids[0].clone(), None)], 500);
        assert!(g.is(GroupState::Empty));
        assert!(g.expired_offsets(599, 100).is_empty());
        assert_eq!(g.expired_offsets(600, 100), vec![("t".to_owned(), 0)]);
    }

    #[test]
    fn subscription_topics_parse() {
        // version 1, topics ["a", "bc"], then user data (ignored).
        let raw = [
            0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 255, 255, 255, 255,
        ];
        assert_eq!(
            parse_subscription_topics(&raw),
            Some(vec!["a".to_owned(), "bc".to_owned()])
        );
        assert_eq!(parse_subscription_topics(&[0, 1, 0]), None);
    }
}
