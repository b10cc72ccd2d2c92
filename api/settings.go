package api

import (
	"slices"

	"github.com/kolejka-go/kolejka/spec"
)

// Extensions a server may announce in its settings' "extensions" (a
// Kolejka server announces none, and its clients ignore the key). A
// client uses one only when it is announced.
const (
	// ExtBearer: Authorization: Bearer <token>, no CSRF.
	ExtBearer = "bearer"
	// ExtHeartbeat: POST /queue/heartbeat/; DequeueRequest.Heartbeat.
	ExtHeartbeat = "heartbeat"
	// ExtLongPoll: DequeueRequest.Wait; GET /task/result/<key>/?wait=N.
	ExtLongPoll = "long_poll"
	// ExtDequeueDefaults: DequeueRequest.Defaults.
	ExtDequeueDefaults = "dequeue_defaults"
	// ExtRelease: POST /queue/release/, a node hands back tasks it will
	// not finish.
	ExtRelease = "release"
	// ExtCallbacks: a task's callback_url is delivered (only servers that
	// allow some callback hosts announce it).
	ExtCallbacks = "callbacks"
	// ExtTypes: task types under /type/ (TypePut, TypeTask, ...) and
	// DequeueAnswer.PassEnv.
	ExtTypes = "types"
	// ExtTaskList: GET /task/list/, a user's tasks newest first.
	ExtTaskList = "task_list"
	// ExtTaskDetail: TaskAnswer's lifecycle keys (state, queue, type,
	// node, assignments, times, result_status).
	ExtTaskDetail = "task_detail"
	// ExtCancel: POST /task/task/<key>/cancel/; a cancelled task's
	// result is answered with api.Cancelled.
	ExtCancel = "cancel"
	// ExtClone: POST /task/task/<key>/clone/, the same task again.
	ExtClone = "clone"
	// ExtQueues: named queues (docs/queues.md): DequeueRequest.Queues, a
	// task's "queue" key, QueueStats.Queues.
	ExtQueues = "queues"
	// ExtWorkflows: workflow runs under /workflow/ (WorkflowPut,
	// WorkflowAnswer, ...), advanced by the server (docs/workflows.md).
	ExtWorkflows = "workflows"
	// ExtTriggers: schedules under /schedule/, triggers under /trigger/
	// and webhooks POST /trigger/<name>/ (TriggerPut, TriggerAnswer, ...;
	// docs/triggers.md).
	ExtTriggers = "triggers"
	// ExtNodes: GET /node/ (NodesAnswer), POST /node/<name>/drain/ and
	// /undrain/ (NodeAnswer); DequeueRequest.Capacity.
	ExtNodes = "nodes"
	// ExtImages: images under /image/ (ImagePut, ImageAnswer, ...) that
	// nodes fetch and import when a task names one they lack
	// (docs/images.md).
	ExtImages = "images"
	// ExtRoomWake: DequeueRequest.RoomWake, a node's result post ends its
	// held dequeue.
	ExtRoomWake = "room_wake"
)

// Settings are a server's settings, as GET /settings/ answers them. A
// Kolejka server sends only the hash algorithm and the limits; the other
// keys are ours.
type Settings struct {
	BlobHashAlgorithm string   `json:"blob_hash_algorithm"`
	Extensions        []string `json:"extensions"`
	// LeaseTime is how long a heartbeating node's lease lasts (a Kolejka
	// time).
	LeaseTime string `json:"lease_time"`
	// Limits are the server's caps on every task.
	Limits spec.Limits `json:"limits"`
	// MaxResultBody is the cap on a result's body (a size, e.g.
	// "16777216b"), so that a node can tell before uploading anything
	// that a result will not fit.
	MaxResultBody string `json:"max_result_body"`
	// MaxWait caps a long poll's wait (a Kolejka time).
	MaxWait string `json:"max_wait"`
}

// Has reports whether the server announces an extension.
func (s Settings) Has(ext string) bool { return slices.Contains(s.Extensions, ext) }

// SettingsAnswer is GET /settings/'s answer.
type SettingsAnswer struct {
	Settings
	Envelope
}
