package freeswitch

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"callbridge/esl/internal/wire"
)

// Channel is one row of "show channels as json", for reconciling the calls
// a controller believes are live with those the node has.
type Channel struct {
	UUID        string
	Direction   string
	Created     time.Time // from created_epoch, UTC
	Name        string
	State       string
	CallState   string
	CIDName     string
	CIDNum      string
	Dest        string
	Application string
	CallUUID    string
	Hostname    string
}

// ParseChannels reads the result of ShowChannels. It fails with a parse
// error if the result is not the JSON FreeSWITCH produces.
func ParseChannels(s string) ([]Channel, error) {
	var doc struct {
		RowCount int
		Rows     []json.RawMessage
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return nil, fmt.Errorf("esl: parsing show channels: %w", err)
	}
	chans := make([]Channel, 0, len(doc.Rows))
	for _, raw := range doc.Rows {
		var row map[string]any
		if err := json.Unmarshal(raw, &row); err != nil {
			return nil, fmt.Errorf("esl: parsing show channels row: %w", err)
		}
		get := func(k string) string { return wire.HeaderString(row[k]) }
		ch := Channel{
			UUID: get("uuid"), Direction: get("direction"), Name: get("name"),
			State: get("state"), CallState: get("callstate"), CIDName: get("cid_name"),
			CIDNum: get("cid_num"), Dest: get("dest"), Application: get("application"),
			CallUUID: get("call_uuid"), Hostname: get("hostname"),
		}
		if sec, err := strconv.ParseInt(get("created_epoch"), 10, 64); err == nil {
			ch.Created = time.Unix(sec, 0).UTC()
		}
		chans = append(chans, ch)
	}
	return chans, nil
}
