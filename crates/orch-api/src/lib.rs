//! The HTTP API's types: every request and response body the daemon's `/v1` routes take and
//! give, with their OpenAPI schemas (`utoipa::ToSchema`). The daemon's handlers and its OpenAPI
//! document, the dashboard, the CLI (its `--json` output and its HTTP client) and the remote
//! worker all use these, so a renamed field breaks the build, not a page or a worker.
//!
//! Architecture invariant: plain data and conversions from `orch-core` types only; no store, no
//! HTTP framework, no I/O.

pub mod agents;
pub mod approvals;
pub mod bundles;
pub mod error;
pub mod events;
pub mod forge;
pub mod info_requests;
pub mod jobs;
pub mod limits;
pub mod logs;
pub mod ops;
pub mod reviews;
pub mod tasks;
pub mod views;
pub mod worker;

pub use agents::{
    ReplyRequest, UsageRecordView, UsageReport, UsageSummaryView, UsageTotalView, UsageView,
};
pub use approvals::{ApprovalRequest, ChildrenContext};
pub use bundles::{BundleStored, FileLengths, FilePiece, FilesRequest};
pub use error::{ErrorBody, ErrorDetail};
pub use events::{LaggedEvent, StreamedEvent};
pub use forge::{ForgeLinkView, PublishView};
pub use info_requests::{
    AnswerRequest, AnsweredKeyView, InfoRequestList, InfoRequestView, InputValueView, InputValues,
    ParkRequest, ParkedView,
};
pub use jobs::{AddJob, FiringView, JobView};
pub use limits::{DailyUsageView, Gauge, LimitView, SpendView, Today, UsageLimitsView};
pub use logs::{LogChunk, LogLine, LogSearch};
pub use ops::{HealthView, WebhookOutcome};
pub use reviews::{ReviewReport, ReviewView};
pub use tasks::{
    BranchView, CancelRequest, CommandRequest, CreateTask, CreatedTask, KilledSession, ListQuery,
    ProjectView, RetryRequest, StatusChange, StatusCounts, StepRequest, SubmitWorkflow, TaskDetail,
    WorkflowView,
};
pub use views::{time, EventView, RunView, TaskView};
pub use worker::{
    ClaimRequest, ClaimedDependency, ClaimedReply, ClaimedRun, ClaimedTask, CompleteRequest,
    HeartbeatRequest, HeartbeatResponse, OutcomeRequest, PlannedChildren, RequeueRequest,
    RunStatusResponse,
};
