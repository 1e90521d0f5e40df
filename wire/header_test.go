package wire

import (
	"bytes"
	"testing"
)

func TestRequestHeader(t *testing.T) {
	client := "kcat"
	for _, flexible := range []bool{false, true} {
		for _, id := range []*string{&client, nil} {
			h := RequestHeader{APIKey: 3, APIVersion: 12, CorrelationID: -7, ClientID: id}
			frame := AppendRequestHeader(nil, h, flexible)
			headerLen := len(frame)
			frame = append(frame, "body"...)
			if flexible && frame[headerLen-1] != 0 {
				t.Fatal("flexible header lacks tagged fields")
			}
			got, body, err := ParseRequestHeader(frame, flexible)
			if err != nil {
				t.Fatalf("flexible=%v: %v", flexible, err)
			}
			if string(body) != "body" || got.APIKey != 3 || got.APIVersion != 12 || got.CorrelationID != -7 ||
				(got.ClientID == nil) != (id == nil) || (id != nil && *got.ClientID != *id) {
				t.Errorf("flexible=%v: got %+v body %q", flexible, got, body)
			}
			key, version, corr, ok := PeekAPIKeyVersion(frame)
			if !ok || key != 3 || version != 12 || corr != -7 {
				t.Errorf("peek: %d %d %d %v", key, version, corr, ok)
			}
		}
	}
	// v2 keeps the classic INT16 client_id, not a compact string.
	frame := AppendRequestHeader(nil, RequestHeader{ClientID: &client}, true)
	if !bytes.Equal(frame[8:10], []byte{0, 4}) {
		t.Errorf("client_id prefix %x, want 0004", frame[8:10])
	}
	if _, _, _, ok := PeekAPIKeyVersion(frame[:7]); ok {
		t.Error("peek accepted 7 bytes")
	}
	if _, _, err := ParseRequestHeader(frame[:9], true); err == nil {
		t.Error("truncated header accepted")
	}
}

func TestResponseHeader(t *testing.T) {
	if got := AppendResponseHeader(nil, 258, false); !bytes.Equal(got, []byte{0, 0, 1, 2}) {
		t.Errorf("v0 = %x", got)
	}
	got := AppendResponseHeader(nil, 258, true)
	if !bytes.Equal(got, []byte{0, 0, 1, 2, 0}) {
		t.Errorf("v1 = %x", got)
	}
	corr, body, err := ParseResponseHeader(append(got, 9), true)
	if err != nil || corr != 258 || !bytes.Equal(body, []byte{9}) {
		t.Errorf("parse: %d %x %v", corr, body, err)
	}
}

func FuzzRequestHeader(f *testing.F) {
	client := "client"
	f.Add(AppendRequestHeader(nil, RequestHeader{APIKey: 18, APIVersion: 3, CorrelationID: 1, ClientID: &client}, true), true)
	f.Add(AppendRequestHeader(nil, RequestHeader{APIKey: 0, APIVersion: 9}, false), false)
	f.Add([]byte{0, 1, 0, 2, 0, 0, 0, 3, 0x7f, 0xff}, false)
	f.Fuzz(func(t *testing.T, frame []byte, flexible bool) {
		h, body, err := ParseRequestHeader(frame, flexible)
		if err != nil {
			return
		}
		if len(body) > len(frame) || (len(body) > 0 && &body[len(body)-1] != &frame[len(frame)-1]) {
			t.Fatal("body is not a suffix of frame")
		}
		key, version, corr, ok := PeekAPIKeyVersion(frame)
		if !ok || key != h.APIKey || version != h.APIVersion || corr != h.CorrelationID {
			t.Fatal("peek disagrees with parse")
		}
		// Re-encoding the parsed header gives a header of the same length
		// when its tagged fields were empty.
		re := AppendRequestHeader(nil, h, flexible)
		if !flexible && !bytes.Equal(re, frame[:len(frame)-len(body)]) {
			t.Fatalf("re-encoding differs: %x vs %x", re, frame[:len(frame)-len(body)])
		}
	})
}
