package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// emitter writes Go source for one message.
type emitter struct {
	buf bytes.Buffer
	msg *message
}

func (e *emitter) p(format string, args ...any) {
	fmt.Fprintf(&e.buf, format, args...)
	e.buf.WriteByte('\n')
}

// mode is how a version-dependent property resolves within a context.
type mode int

const (
	never mode = iota
	always
	dynamic
)

// modeOf says whether versions vs hold throughout ctx, never, or sometimes.
func modeOf(vs, ctx versions) mode {
	switch {
	case vs.intersect(ctx).empty():
		return never
	case vs.covers(ctx):
		return always
	}
	return dynamic
}

// cond returns the Go condition "version in vs", simplified within ctx
// (it is "" when vs covers ctx).
func cond(vs, ctx versions) string {
	if vs.covers(ctx) {
		return ""
	}
	if vs.empty() || vs.intersect(ctx).empty() {
		return "false"
	}
	var parts []string
	if vs.lo > ctx.lo {
		parts = append(parts, fmt.Sprintf("version >= %d", vs.lo))
	}
	if vs.hi < ctx.hi {
		parts = append(parts, fmt.Sprintf("version <= %d", vs.hi))
	}
	return strings.Join(parts, " && ")
}

// pick emits compact or classic code depending on flexibility.
func (e *emitter) pick(flex mode, compact, classic string) {
	switch flex {
	case always:
		e.p("%s", compact)
	case never:
		e.p("%s", classic)
	default:
		e.p("if flexible {\n%s\n} else {\n%s\n}", compact, classic)
	}
}

// pickNull emits code for nullable or non-nullable versions.
func (e *emitter) pickNull(null mode, nullCond, ifNull, ifNot string) {
	switch null {
	case always:
		e.p("%s", ifNull)
	case never:
		e.p("%s", ifNot)
	default:
		e.p("if %s {\n%s\n} else {\n%s\n}", nullCond, ifNull, ifNot)
	}
}

// goLiteral returns the Go expression for a JSON default of the field's
// element kind; "" means the zero value.
func (f *field) defaultLiteral() string {
	d := f.def
	switch f.kind {
	case kindString:
		if d == "null" && f.nullableAny() {
			return ""
		}
		if d == "" || d == "null" {
			return ""
		}
		if f.nullableAny() {
			return "ptr(" + strconv.Quote(d) + ")"
		}
		return strconv.Quote(d)
	case kindBool:
		if d == "true" {
			return "true"
		}
		return ""
	case kindFloat64:
		if d == "" {
			return ""
		}
		v, err := strconv.ParseFloat(d, 64)
		if err != nil {
			panic(fmt.Sprintf("field %s: bad float default %q", f.name, d))
		}
		if v == 0 {
			return ""
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case kindInt8, kindInt16, kindInt32, kindInt64, kindUint16, kindUint32:
		if d == "" {
			return ""
		}
		v, err := strconv.ParseInt(d, 0, 64)
		if err != nil {
			panic(fmt.Sprintf("field %s: bad int default %q", f.name, d))
		}
		if v == 0 {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	return ""
}

// genStruct emits the type and its methods.
func (e *emitter) genStruct(st *structType) {
	if st.about != "" && !st.top {
		e.p("// %s is described by Kafka as: %s", st.name, docLine(st.about))
	} else if st.top {
		kind := "response"
		if e.msg.request {
			kind = "request"
		}
		e.p("// %s is the %s body of API key %d (%s), versions %v, flexible %v.",
			st.name, kind, e.msg.apiKey, apiName(e.msg.name), e.msg.valid, e.msg.flexible)
	}
	e.p("type %s struct {", st.name)
	for _, f := range st.fields {
		if f.about != "" {
			e.p("// %s", docLine(f.about))
		}
		extra := ""
		if !f.nullable.empty() {
			extra += "; nullable " + f.nullable.String()
		}
		if f.tag >= 0 {
			extra += fmt.Sprintf("; tag %d", f.tag)
		}
		e.p("//\n// Versions %v%s.", f.versions, extra)
		e.p("%s %s", f.name, f.goType())
	}
	e.p("}\n")
	e.genDefault(st)
	e.genRead(st)
	e.genAppend(st)
	if st.needIsDef {
		e.genIsDefault(st)
	}
	if st.top {
		e.genMessageMethods(st)
	}
}

func docLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (e *emitter) genDefault(st *structType) {
	e.p("// Default sets every field to its Kafka default.")
	e.p("func (m *%s) Default() {", st.name)
	e.p("*m = %s{}", st.name)
	for _, f := range st.fields {
		if f.array {
			continue
		}
		if f.kind == kindStruct {
			if !f.nullableAny() {
				e.p("m.%s.Default()", f.name)
			}
			continue
		}
		if lit := f.defaultLiteral(); lit != "" {
			e.p("m.%s = %s", f.name, lit)
		}
	}
	e.p("}\n")
}

func (e *emitter) flexibleDecl(st *structType) {
	switch modeOf(e.msg.flexible, st.ctx) {
	case dynamic:
		e.p("flexible := version >= %d", e.msg.flexible.lo)
	}
}

func (e *emitter) genRead(st *structType) {
	e.p("// Read decodes the fields present in version from r, leaving absent")
	e.p("// fields at their defaults. Errors are recorded in r.")
	e.p("func (m *%s) Read(r *wire.Reader, version int16) {", st.name)
	e.p("m.Default()")
	e.flexibleDecl(st)
	flex := modeOf(e.msg.flexible, st.ctx)
	var tagged []*field
	for _, f := range st.fields {
		if f.tag >= 0 {
			tagged = append(tagged, f)
			continue
		}
		c := cond(f.versions, st.ctx)
		if c != "" {
			e.p("if %s {", c)
		}
		e.readField(f, "m."+f.name, "r", st.ctx.intersect(f.versions), flex)
		if c != "" {
			e.p("}")
		}
	}
	if flex != never {
		if flex == dynamic {
			e.p("if flexible {")
		}
		if len(tagged) == 0 {
			e.p("r.TaggedFields(nil)")
		} else {
			e.p("r.TaggedFields(func(tag uint32, data []byte) {")
			e.p("switch tag {")
			for _, f := range sortByTag(tagged) {
				e.p("case %d:", f.tag)
				c := cond(f.tagged, st.ctx)
				if c != "" {
					e.p("if !(%s) {\nreturn\n}", c)
				}
				e.p("tr := wire.NewReader(data)")
				e.readField(f, "m."+f.name, "(&tr)", st.ctx.intersect(f.versions), always)
				e.p("if err := tr.Err(); err != nil {\nr.Fail(err)\n}")
			}
			e.p("}")
			e.p("})")
		}
		if flex == dynamic {
			e.p("}")
		}
	}
	e.p("}\n")
}

func sortByTag(fs []*field) []*field {
	out := append([]*field(nil), fs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].tag < out[i].tag {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// readField emits code reading f into target using reader expression r.
func (e *emitter) readField(f *field, target, r string, ctx versions, flex mode) {
	null := modeOf(f.nullable, ctx)
	nullCond := cond(f.nullable, ctx)
	notNullCheck := func(isNil string) {
		guard := isNil
		switch null {
		case always:
			return
		case dynamic:
			guard = fmt.Sprintf("%s && !(%s)", isNil, nullCond)
			if isNil == "true" {
				guard = "!(" + nullCond + ")"
			}
		}
		if guard == "true" {
			e.p("%s.Fail(wire.ErrUnexpectedNull)", r)
			return
		}
		e.p("if %s {\n%s.Fail(wire.ErrUnexpectedNull)\n}", guard, r)
	}
	if f.array {
		e.p("{")
		e.p("var n int32")
		e.pick(flex, "n = "+r+".CompactArrayLen()", "n = "+r+".ArrayLen()")
		e.p("if n < 0 {")
		notNullCheck("true")
		e.p("%s = nil", target)
		e.p("} else {")
		e.p("a := make(%s, n)", f.goType())
		e.p("for i := range a {")
		e.readElem(f, "a[i]", r, flex)
		e.p("}")
		e.p("%s = a", target)
		e.p("}")
		e.p("}")
		return
	}
	switch f.kind {
	case kindString:
		if !f.nullableAny() {
			e.pick(flex, target+" = "+r+".CompactString()", target+" = "+r+".String()")
			return
		}
		e.pick(flex, target+" = "+r+".CompactNullableString()", target+" = "+r+".NullableString()")
		if null != always {
			notNullCheck(target + " == nil")
		}
	case kindBytes, kindRecords:
		if null == never {
			e.pick(flex, target+" = "+r+".CompactBytes()", target+" = "+r+".Bytes()")
			return
		}
		e.pick(flex, target+" = "+r+".CompactNullableBytes()", target+" = "+r+".NullableBytes()")
		if null != always {
			notNullCheck(target + " == nil")
		}
	case kindStruct:
		if !f.nullableAny() {
			e.p("%s.Read(%s, version)", target, r)
			return
		}
		readIt := fmt.Sprintf("v := new(%s)\nv.Read(%s, version)\n%s = v", f.st.name, r, target)
		ifNull := fmt.Sprintf("if %s.Int8() < 0 {\n%s = nil\n} else {\n%s\n}", r, target, readIt)
		e.pickNull(null, nullCond, ifNull, readIt)
	default:
		e.p("%s = %s.%s()", target, r, scalarInfo[f.kind][1])
	}
}

// readElem emits code reading one array element (never nullable).
func (e *emitter) readElem(f *field, target, r string, flex mode) {
	switch f.kind {
	case kindString:
		e.pick(flex, target+" = "+r+".CompactString()", target+" = "+r+".String()")
	case kindBytes, kindRecords:
		e.pick(flex, target+" = "+r+".CompactBytes()", target+" = "+r+".Bytes()")
	case kindStruct:
		e.p("%s.Read(%s, version)", target, r)
	default:
		e.p("%s = %s.%s()", target, r, scalarInfo[f.kind][1])
	}
}

func (e *emitter) genAppend(st *structType) {
	e.p("// Append appends the encoding of m in version to dst.")
	e.p("func (m *%s) Append(dst []byte, version int16) []byte {", st.name)
	e.flexibleDecl(st)
	flex := modeOf(e.msg.flexible, st.ctx)
	var tagged []*field
	for _, f := range st.fields {
		if f.tag >= 0 {
			tagged = append(tagged, f)
			continue
		}
		c := cond(f.versions, st.ctx)
		if c != "" {
			e.p("if %s {", c)
		}
		e.appendField(f, "m."+f.name, st.ctx.intersect(f.versions), flex)
		if c != "" {
			e.p("}")
		}
	}
	if flex != never {
		if flex == dynamic {
			e.p("if flexible {")
		}
		if len(tagged) == 0 {
			e.p("dst = wire.AppendEmptyTaggedFields(dst)")
		} else {
			tagged = sortByTag(tagged)
			conds := make([]string, len(tagged))
			e.p("var tags uint32")
			for i, f := range tagged {
				conds[i] = nonDefault(f, "m."+f.name)
				if c := cond(f.tagged, st.ctx); c != "" {
					conds[i] = "(" + c + ") && " + conds[i]
				}
				e.p("if %s {\ntags++\n}", conds[i])
			}
			e.p("dst = wire.AppendUvarint(dst, tags)")
			for i, f := range tagged {
				e.p("if %s {", conds[i])
				e.p("dst = wire.AppendUvarint(dst, %d)", f.tag)
				e.p("start := len(dst)")
				e.appendField(f, "m."+f.name, st.ctx.intersect(f.versions), always)
				e.p("dst = insertSize(dst, start)")
				e.p("}")
			}
		}
		if flex == dynamic {
			e.p("}")
		}
	}
	e.p("return dst")
	e.p("}\n")
}

// nonDefault returns the condition under which a tagged field is written:
// when it differs from its default, as Kafka does.
func nonDefault(f *field, v string) string {
	if f.array {
		if !f.nullable.empty() && f.def == "null" {
			return v + " != nil"
		}
		return "len(" + v + ") != 0"
	}
	switch f.kind {
	case kindStruct:
		if f.nullableAny() {
			return v + " != nil"
		}
		return "!" + v + ".isDefault()"
	case kindString:
		lit := f.defaultLiteral()
		if f.nullableAny() {
			if lit == "" {
				return v + " != nil"
			}
			return fmt.Sprintf("(%s == nil || *%s != %s)", v, v, strings.TrimSuffix(strings.TrimPrefix(lit, "ptr("), ")"))
		}
		if lit == "" {
			lit = `""`
		}
		return v + " != " + lit
	case kindBytes, kindRecords:
		if f.nullableAny() {
			return v + " != nil"
		}
		return "len(" + v + ") != 0"
	case kindUUID:
		return v + " != [16]byte{}"
	case kindBool:
		if f.defaultLiteral() == "true" {
			return "!" + v
		}
		return v
	}
	lit := f.defaultLiteral()
	if lit == "" {
		lit = "0"
	}
	return v + " != " + lit
}

// appendField emits code appending f from expression v.
func (e *emitter) appendField(f *field, v string, ctx versions, flex mode) {
	null := modeOf(f.nullable, ctx)
	nullCond := cond(f.nullable, ctx)
	if f.array {
		nullArray := fmt.Sprintf("if %s == nil {\n%s\n} else {\n%s\n}", v,
			pickStr(flex, "dst = wire.AppendCompactArrayLen(dst, -1)", "dst = wire.AppendArrayLen(dst, -1)"),
			pickStr(flex, "dst = wire.AppendCompactArrayLen(dst, len("+v+"))", "dst = wire.AppendArrayLen(dst, len("+v+"))"))
		e.pickNull(null, nullCond, nullArray,
			pickStr(flex, "dst = wire.AppendCompactArrayLen(dst, len("+v+"))", "dst = wire.AppendArrayLen(dst, len("+v+"))"))
		e.p("for i := range %s {", v)
		e.appendElem(f, v+"[i]", flex)
		e.p("}")
		return
	}
	switch f.kind {
	case kindString:
		if !f.nullableAny() {
			e.pick(flex, "dst = wire.AppendCompactString(dst, "+v+")", "dst = wire.AppendString(dst, "+v+")")
			return
		}
		e.pickNull(null, nullCond,
			pickStr(flex, "dst = wire.AppendCompactNullableString(dst, "+v+")", "dst = wire.AppendNullableString(dst, "+v+")"),
			pickStr(flex, "dst = wire.AppendCompactString(dst, deref("+v+"))", "dst = wire.AppendString(dst, deref("+v+"))"))
	case kindBytes, kindRecords:
		e.pickNull(null, nullCond,
			pickStr(flex, "dst = wire.AppendCompactNullableBytes(dst, "+v+")", "dst = wire.AppendNullableBytes(dst, "+v+")"),
			pickStr(flex, "dst = wire.AppendCompactBytes(dst, "+v+")", "dst = wire.AppendBytes(dst, "+v+")"))
	case kindStruct:
		if !f.nullableAny() {
			e.p("dst = %s.Append(dst, version)", v)
			return
		}
		// A nil struct in a version where it is not nullable is written
		// as the default struct.
		notNull := fmt.Sprintf("if %s == nil {\nvar d %s\nd.Default()\ndst = d.Append(dst, version)\n} else {\ndst = %s.Append(dst, version)\n}", v, f.st.name, v)
		isNull := fmt.Sprintf("if %s == nil {\ndst = wire.AppendInt8(dst, -1)\n} else {\ndst = wire.AppendInt8(dst, 1)\ndst = %s.Append(dst, version)\n}", v, v)
		e.pickNull(null, nullCond, isNull, notNull)
	default:
		e.p("dst = wire.Append%s(dst, %s)", scalarInfo[f.kind][1], v)
	}
}

func (e *emitter) appendElem(f *field, v string, flex mode) {
	switch f.kind {
	case kindString:
		e.pick(flex, "dst = wire.AppendCompactString(dst, "+v+")", "dst = wire.AppendString(dst, "+v+")")
	case kindBytes, kindRecords:
		e.pick(flex, "dst = wire.AppendCompactBytes(dst, "+v+")", "dst = wire.AppendBytes(dst, "+v+")")
	case kindStruct:
		e.p("dst = %s.Append(dst, version)", v)
	default:
		e.p("dst = wire.Append%s(dst, %s)", scalarInfo[f.kind][1], v)
	}
}

func pickStr(flex mode, compact, classic string) string {
	switch flex {
	case always:
		return compact
	case never:
		return classic
	}
	return fmt.Sprintf("if flexible {\n%s\n} else {\n%s\n}", compact, classic)
}

// genIsDefault emits isDefault, used to decide whether a tagged struct
// field is written.
func (e *emitter) genIsDefault(st *structType) {
	e.p("// isDefault reports whether m equals its default value.")
	e.p("func (m *%s) isDefault() bool {", st.name)
	e.p("var d %s", st.name)
	e.p("d.Default()")
	var conds []string
	for _, f := range st.fields {
		v, dv := "m."+f.name, "d."+f.name
		switch {
		case f.array || f.kind == kindBytes || f.kind == kindRecords:
			conds = append(conds, fmt.Sprintf("(%s == nil) == (%s == nil) && len(%s) == len(%s)", v, dv, v, dv))
			if f.array {
				conds[len(conds)-1] += " && len(" + v + ") == 0"
			} else {
				conds[len(conds)-1] += fmt.Sprintf(" && string(%s) == string(%s)", v, dv)
			}
		case f.kind == kindStruct && f.nullableAny():
			conds = append(conds, fmt.Sprintf("(%s == nil) == (%s == nil) && (%s == nil || %s.isDefault())", v, dv, v, v))
		case f.kind == kindStruct:
			conds = append(conds, v+".isDefault()")
		case f.kind == kindString && f.nullableAny():
			conds = append(conds, fmt.Sprintf("(%s == nil) == (%s == nil) && (%s == nil || *%s == *%s)", v, dv, v, v, dv))
		default:
			conds = append(conds, v+" == "+dv)
		}
	}
	if len(conds) == 0 {
		conds = []string{"true"}
	}
	e.p("return %s", strings.Join(conds, " &&\n"))
	e.p("}\n")
}

func (e *emitter) genMessageMethods(st *structType) {
	e.p("// APIKey returns %d, the API key of %s.", e.msg.apiKey, st.name)
	e.p("func (*%s) APIKey() int16 { return %d }\n", st.name, e.msg.apiKey)
	e.p("// Versions returns the versions %s is defined for.", st.name)
	e.p("func (*%s) Versions() VersionRange { return VersionRange{Min: %d, Max: %d, FlexibleMin: %d} }\n",
		st.name, e.msg.valid.lo, e.msg.valid.hi, flexibleMin(e.msg))
	if e.msg.request {
		e.p("func (*%s) isRequest() {}\n", st.name)
	} else {
		e.p("func (*%s) isResponse() {}\n", st.name)
	}
	e.p("// Decode decodes b as version of %s. Bytes after the body are", st.name)
	e.p("// ignored (see the package documentation).")
	e.p("func (m *%s) Decode(b []byte, version int16) error {", st.name)
	e.p("if version < %d || version > %d {\nreturn errVersion(%d, version)\n}", e.msg.valid.lo, e.msg.valid.hi, e.msg.apiKey)
	e.p("r := wire.NewReader(b)")
	e.p("m.Read(&r, version)")
	e.p("return r.Err()")
	e.p("}\n")
}

func flexibleMin(m *message) int {
	if m.flexible.empty() {
		return maxVersion
	}
	return m.flexible.lo
}

// apiName is the message name without Request/Response.
func apiName(name string) string {
	name = strings.TrimSuffix(name, "Request")
	return strings.TrimSuffix(name, "Response")
}

// markIsDefault flags struct types reachable from tagged struct fields.
func markIsDefault(m *message) {
	var mark func(st *structType)
	mark = func(st *structType) {
		if st.needIsDef {
			return
		}
		st.needIsDef = true
		for _, f := range st.fields {
			if f.kind == kindStruct && !f.array {
				mark(f.st)
			}
		}
	}
	var walk func(st *structType)
	walk = func(st *structType) {
		for _, f := range st.fields {
			if f.kind == kindStruct && f.tag >= 0 && !f.array && !f.nullableAny() {
				mark(f.st)
			}
		}
	}
	walk(m.top)
	for _, st := range m.structs {
		walk(st)
	}
}
