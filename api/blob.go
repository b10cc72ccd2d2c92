package api

// This file owns the messages of /blob/. Uploads are the raw bytes and
// downloads answer them; only the metadata is JSON. Times are written as
// Django's JSON encoder writes them (ISO 8601 in UTC with "Z").

// Reference is a blob reference: a key, owned by a user, to stored bytes.
type Reference struct {
	// Blob is the SHA-256 of the bytes, in hex.
	Blob       string `json:"blob"`
	Key        string `json:"key"`
	Size       int64  `json:"size"`
	TimeAccess string `json:"time_access"`
	TimeCreate string `json:"time_create"`
}

// ReferenceAnswer answers an upload, a new reference to known bytes
// (POST /blob/blob/<sha256>/) and a PUT of a reference: its metadata.
type ReferenceAnswer struct {
	Reference Reference `json:"reference"`
	Envelope
}

// Blob is stored bytes, as a PUT of /blob/blob/<sha256>/ describes them.
type Blob struct {
	// Key is the SHA-256 of the bytes, in hex.
	Key string `json:"key"`
	// References counts the references to the bytes.
	References int64  `json:"references"`
	Size       int64  `json:"size"`
	TimeAccess string `json:"time_access"`
	TimeCreate string `json:"time_create"`
}

// BlobAnswer answers a PUT of /blob/blob/<sha256>/.
type BlobAnswer struct {
	Blob Blob `json:"blob"`
	Envelope
}
