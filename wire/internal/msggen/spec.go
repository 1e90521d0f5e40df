package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// versions is an inclusive version range; lo > hi means no versions.
type versions struct{ lo, hi int }

// noVersions is the empty range.
var noVersions = versions{1, 0}

const maxVersion = math.MaxInt16

// parseVersions parses Kafka's version syntax: "none", "", "N", "N+", "N-M".
func parseVersions(s string) (versions, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return noVersions, nil
	}
	if lo, ok := strings.CutSuffix(s, "+"); ok {
		n, err := strconv.Atoi(lo)
		return versions{n, maxVersion}, err
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err := strconv.Atoi(lo)
		if err != nil {
			return noVersions, err
		}
		b, err := strconv.Atoi(hi)
		return versions{a, b}, err
	}
	n, err := strconv.Atoi(s)
	return versions{n, n}, err
}

func (v versions) empty() bool { return v.lo > v.hi }

func (v versions) intersect(o versions) versions {
	return versions{max(v.lo, o.lo), min(v.hi, o.hi)}
}

// covers reports whether v contains every version of o.
func (v versions) covers(o versions) bool {
	return o.empty() || (v.lo <= o.lo && v.hi >= o.hi)
}

// union returns the smallest range holding both.
func (v versions) union(o versions) versions {
	if v.empty() {
		return o
	}
	if o.empty() {
		return v
	}
	return versions{min(v.lo, o.lo), max(v.hi, o.hi)}
}

func (v versions) String() string {
	switch {
	case v.empty():
		return "none"
	case v.hi == maxVersion:
		return fmt.Sprintf("%d+", v.lo)
	case v.lo == v.hi:
		return fmt.Sprintf("%d", v.lo)
	}
	return fmt.Sprintf("%d-%d", v.lo, v.hi)
}

// fieldSpec and messageSpec mirror Kafka's message JSON.
type fieldSpec struct {
	Name             string          `json:"name"`
	Type             string          `json:"type"`
	Versions         string          `json:"versions"`
	NullableVersions string          `json:"nullableVersions"`
	TaggedVersions   string          `json:"taggedVersions"`
	Tag              json.RawMessage `json:"tag"`
	Default          json.RawMessage `json:"default"`
	About            string          `json:"about"`
	Fields           []fieldSpec     `json:"fields"`
}

type structSpec struct {
	Name     string      `json:"name"`
	Versions string      `json:"versions"`
	Fields   []fieldSpec `json:"fields"`
}

type messageSpec struct {
	APIKey                *int         `json:"apiKey"`
	Type                  string       `json:"type"`
	Name                  string       `json:"name"`
	ValidVersions         string       `json:"validVersions"`
	FlexibleVersions      string       `json:"flexibleVersions"`
	LatestVersionUnstable bool         `json:"latestVersionUnstable"`
	Fields                []fieldSpec  `json:"fields"`
	CommonStructs         []structSpec `json:"commonStructs"`
}

// stripComments removes // comments outside of JSON strings.
func stripComments(src []byte) []byte {
	out := make([]byte, 0, len(src))
	inString := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inString {
			out = append(out, c)
			if c == '\\' && i+1 < len(src) {
				i++
				out = append(out, src[i])
			} else if c == '"' {
				inString = false
			}
			continue
		}
		if c == '"' {
			inString = true
		} else if c == '/' && i+1 < len(src) && src[i+1] == '/' {
			for i < len(src) && src[i] != '\n' {
				i++
			}
			if i < len(src) {
				out = append(out, '\n')
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// kind is a field's primitive kind.
type kind int

const (
	kindInt8 kind = iota
	kindInt16
	kindInt32
	kindInt64
	kindUint16
	kindUint32
	kindFloat64
	kindBool
	kindString
	kindBytes
	kindRecords
	kindUUID
	kindStruct
)

var kindByName = map[string]kind{
	"int8": kindInt8, "int16": kindInt16, "int32": kindInt32, "int64": kindInt64,
	"uint16": kindUint16, "uint32": kindUint32, "float64": kindFloat64, "bool": kindBool,
	"string": kindString, "bytes": kindBytes, "records": kindRecords, "uuid": kindUUID,
}

// scalarInfo gives the Go type and the wire function suffix of fixed-width kinds.
var scalarInfo = map[kind][2]string{
	kindInt8: {"int8", "Int8"}, kindInt16: {"int16", "Int16"}, kindInt32: {"int32", "Int32"},
	kindInt64: {"int64", "Int64"}, kindUint16: {"uint16", "Uint16"}, kindUint32: {"uint32", "Uint32"},
	kindFloat64: {"float64", "Float64"}, kindBool: {"bool", "Bool"}, kindUUID: {"[16]byte", "UUID"},
}

// field is a resolved field.
type field struct {
	name, about string
	kind        kind
	array       bool
	st          *structType // kindStruct only
	versions    versions    // within the message's valid versions
	nullable    versions
	tagged      versions
	tag         int // -1 if never tagged
	def         string
}

// nullableAny reports whether the field is nullable in some version, which
// makes its Go type a pointer (strings, structs) or allows nil (slices).
func (f *field) nullableAny() bool { return !f.nullable.intersect(f.versions).empty() }

// elemType is the Go type of one value (the element type for arrays).
func (f *field) elemType() string {
	switch f.kind {
	case kindString:
		if !f.array && f.nullableAny() {
			return "*string"
		}
		return "string"
	case kindBytes, kindRecords:
		return "[]byte"
	case kindStruct:
		if !f.array && f.nullableAny() {
			return "*" + f.st.name
		}
		return f.st.name
	}
	return scalarInfo[f.kind][0]
}

func (f *field) goType() string {
	if f.array {
		return "[]" + f.elemType()
	}
	return f.elemType()
}

// structType is a generated Go struct: the message itself or a nested one.
type structType struct {
	name      string
	about     string
	fields    []*field
	ctx       versions // versions in which the struct can appear
	top       bool
	needIsDef bool // used (transitively) as a tagged struct field
}

// message is one resolved request or response.
type message struct {
	name     string
	apiKey   int
	request  bool
	valid    versions
	flexible versions
	unstable bool
	top      *structType
	structs  []*structType // nested, in order of first appearance
}

// loadMessages reads every request and response JSON in dir.
func loadMessages(dir string) ([]*message, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var msgs []*message
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var spec messageSpec
		if err := json.Unmarshal(stripComments(src), &spec); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if spec.Type != "request" && spec.Type != "response" {
			continue
		}
		m, err := resolve(&spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// resolver turns a messageSpec into Go types.
type resolver struct {
	msg     *message
	common  map[string]*structSpec
	byName  map[string]*structType
	pending map[string]bool
}

func resolve(spec *messageSpec) (*message, error) {
	if spec.APIKey == nil {
		return nil, fmt.Errorf("no apiKey")
	}
	valid, err := parseVersions(spec.ValidVersions)
	if err != nil {
		return nil, err
	}
	flexible, err := parseVersions(spec.FlexibleVersions)
	if err != nil {
		return nil, err
	}
	m := &message{
		name: spec.Name, apiKey: *spec.APIKey, request: spec.Type == "request",
		valid: valid, flexible: flexible.intersect(valid), unstable: spec.LatestVersionUnstable,
	}
	if m.flexible.empty() {
		m.flexible = noVersions
	} else {
		m.flexible.hi = maxVersion
	}
	res := &resolver{msg: m, common: map[string]*structSpec{}, byName: map[string]*structType{}}
	for i := range spec.CommonStructs {
		res.common[spec.CommonStructs[i].Name] = &spec.CommonStructs[i]
	}
	m.top = &structType{name: spec.Name, top: true, ctx: valid}
	m.top.fields, err = res.fields(spec.Fields, valid)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// structName applies the naming rule: nested types are prefixed with the
// message name unless the JSON name already starts with it.
func (res *resolver) structName(jsonName string) string {
	if strings.HasPrefix(jsonName, res.msg.name) {
		return jsonName
	}
	return res.msg.name + jsonName
}

func (res *resolver) fields(specs []fieldSpec, ctx versions) ([]*field, error) {
	var out []*field
	for i := range specs {
		f, err := res.field(&specs[i], ctx)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", specs[i].Name, err)
		}
		if f != nil {
			out = append(out, f)
		}
	}
	return out, nil
}

func (res *resolver) field(fs *fieldSpec, ctx versions) (*field, error) {
	vs, err := parseVersions(fs.Versions)
	if err != nil {
		return nil, err
	}
	nullable, err := parseVersions(fs.NullableVersions)
	if err != nil {
		return nil, err
	}
	tagged, err := parseVersions(fs.TaggedVersions)
	if err != nil {
		return nil, err
	}
	// Kafka's Java generator capitalizes names too (isKRaftController).
	name := strings.ToUpper(fs.Name[:1]) + fs.Name[1:]
	f := &field{name: name, about: fs.About, versions: vs.intersect(ctx), tag: -1}
	f.nullable = nullable.intersect(f.versions)
	f.tagged = tagged.intersect(f.versions)
	if f.versions.empty() {
		// A field that exists in no valid version (e.g. removed). Keep it
		// out of the Go type entirely.
		return nil, nil
	}
	if len(fs.Tag) > 0 {
		s := strings.Trim(string(fs.Tag), `"`)
		if f.tag, err = strconv.Atoi(s); err != nil {
			return nil, err
		}
		if !f.tagged.covers(f.versions) {
			return nil, fmt.Errorf("tagged in only some of its versions (%v of %v): unsupported", f.tagged, f.versions)
		}
		if !res.msg.flexible.covers(f.tagged) {
			return nil, fmt.Errorf("tagged outside flexible versions")
		}
	}
	if len(fs.Default) > 0 {
		var s string
		if err := json.Unmarshal(fs.Default, &s); err != nil {
			s = string(fs.Default) // a JSON number or bool
		}
		f.def = s
	}
	typ := fs.Type
	if t, ok := strings.CutPrefix(typ, "[]"); ok {
		f.array = true
		typ = t
	}
	if k, ok := kindByName[typ]; ok {
		f.kind = k
		if len(fs.Fields) > 0 {
			return nil, fmt.Errorf("primitive type %s with fields", typ)
		}
		return f, nil
	}
	f.kind = kindStruct
	f.st, err = res.structType(typ, fs, f.versions)
	return f, err
}

// structType finds or builds the struct named jsonName.
func (res *resolver) structType(jsonName string, fs *fieldSpec, ctx versions) (*structType, error) {
	name := res.structName(jsonName)
	if st, ok := res.byName[name]; ok {
		if len(fs.Fields) > 0 && res.pending[name] {
			return nil, fmt.Errorf("struct %s defined twice", jsonName)
		}
		st.ctx = st.ctx.union(ctx)
		return st, nil
	}
	fieldSpecs := fs.Fields
	if len(fieldSpecs) == 0 {
		cs, ok := res.common[jsonName]
		if !ok {
			return nil, fmt.Errorf("unknown struct type %s", jsonName)
		}
		fieldSpecs = cs.Fields
	}
	st := &structType{name: name, about: fs.About, ctx: ctx}
	res.byName[name] = st
	res.msg.structs = append(res.msg.structs, st)
	if res.pending == nil {
		res.pending = map[string]bool{}
	}
	res.pending[name] = len(fs.Fields) > 0
	// Fields are resolved against the message's valid range: a common
	// struct may be used from several places with different ranges.
	var err error
	st.fields, err = res.fields(fieldSpecs, res.msg.valid)
	return st, err
}
