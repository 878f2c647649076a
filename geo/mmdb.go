package geo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// schema is the record layout of a country or ASN database.
type schema int

const (
	schemaGeoIP2 schema = iota + 1 // {country:{iso_code}, registered_country:{iso_code}}
	schemaFlat                     // {country_code: "JP"} (ip-location-db, DB-IP lite redistributions)
	schemaASN                      // {autonomous_system_number, autonomous_system_organization}
)

func (s schema) String() string {
	switch s {
	case schemaGeoIP2:
		return "geoip2"
	case schemaFlat:
		return "flat"
	case schemaASN:
		return "asn"
	}
	return "unknown"
}

// dbFile is one mmdb file, reopened when the file on disk is replaced
// (geoipupdate writes a new file and renames it over the old one).
type dbFile struct {
	setting string // config key, for messages: "geo.mmdb"
	path    string
	copyDir string // where a private copy to map is made ("" = read into memory)
	want    func(schema) bool
	log     *slog.Logger

	cur     atomic.Pointer[dbHandle] // nil while the file is missing
	checkMu sync.Mutex
}

type dbHandle struct {
	r      *maxminddb.Reader
	schema schema
	id     fileID
	// cc caches the decoded country per data record: a country DB has a
	// few hundred distinct records behind millions of networks, so after
	// warm-up a lookup is the tree walk only. Slots hold immutable entries
	// (atomic pointers), so concurrent lookups need no lock.
	cc [ccCacheSlots]atomic.Pointer[ccEntry]
}

const (
	ccCacheBits  = 10
	ccCacheSlots = 1 << ccCacheBits
)

type ccEntry struct {
	off uintptr
	cc  string
}

type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	regular  bool
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime(), regular: fi.Mode().IsRegular()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, nil
}

// openDB opens path for setting. A missing file is not an error (a warning
// is logged and lookups answer "?"); a file that is not an mmdb of the
// wanted kind is, naming the setting.
func openDB(setting, path, copyDir string, want func(schema) bool, log *slog.Logger) (*dbFile, error) {
	d := &dbFile{setting: setting, path: path, copyDir: copyDir, want: want, log: log}
	if path == "" {
		return d, nil
	}
	h, err := d.load()
	if errors.Is(err, fs.ErrNotExist) {
		log.Warn("geo: database file is missing; its lookups answer \"?\" until it appears", "setting", setting, "path", path)
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	d.cur.Store(h)
	return d, nil
}

func (d *dbFile) load() (*dbHandle, error) {
	id, err := statID(d.path)
	if err != nil {
		return nil, err
	}
	if !id.regular {
		return nil, fmt.Errorf("geo: %s = %q is not a regular file: set it to a MaxMind DB (.mmdb) file", d.setting, d.path)
	}
	r, err := d.openReader()
	if err != nil {
		return nil, fmt.Errorf("geo: %s = %q is not a MaxMind DB (.mmdb) file (%v): point it at e.g. GeoLite2-Country.mmdb or dbip-country.mmdb", d.setting, d.path, err)
	}
	s, err := detectSchema(r)
	if err != nil || !d.want(s) {
		if err == nil {
			err = fmt.Errorf("records have the %s layout", s)
		}
		return nil, fmt.Errorf("geo: %s = %q (database_type %q) is the wrong kind of database: %v", d.setting, d.path, r.Metadata.DatabaseType, err)
	}
	return &dbHandle{r: r, schema: s, id: id}, nil
}

// openReader maps a private, already unlinked copy of the file when copyDir
// allows, else reads the file into memory.
//
// Why a copy: a mapped file's pages count toward RSS only once touched and
// stay reclaimable page cache, where reading into memory costs the whole
// file in heap (8 MB for dbip-country). But mapping the admin's file itself
// is unsafe: `cp new.mmdb geo.mmdb` truncates and rewrites it in place, and a
// lookup touching a page past the new end would die of SIGBUS. Nobody can
// reach the unlinked copy, and a replaced database gets a new copy while the
// old mapping stays valid for lookups still using it; maxminddb unmaps it
// when its Reader becomes unreachable (lookups keep their handle alive).
func (d *dbFile) openReader() (*maxminddb.Reader, error) {
	if d.copyDir != "" {
		if r, copied, err := mapPrivateCopy(d.path, d.copyDir); copied {
			return r, err
		}
	}
	buf, err := os.ReadFile(d.path)
	if err != nil {
		return nil, err
	}
	return maxminddb.OpenBytes(buf)
}

// mapPrivateCopy copies src into dir, maps the copy and unlinks it. copied
// is false when the copy could not be made (read-only or missing dir, disk
// full): the caller then falls back to reading src into memory.
func mapPrivateCopy(src, dir string) (r *maxminddb.Reader, copied bool, err error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, false, err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".sipsentry-mmdb-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, err
	}
	r, err = maxminddb.Open(tmp.Name())
	return r, true, err
}

// checkReload reopens the file when its identity changed. A broken new file
// keeps the old database in use (and says so).
func (d *dbFile) checkReload() {
	if d == nil || d.path == "" {
		return
	}
	d.checkMu.Lock()
	defer d.checkMu.Unlock()
	id, err := statID(d.path)
	old := d.cur.Load()
	if err != nil {
		if old != nil && errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("geo: database file disappeared; still using the copy in memory", "setting", d.setting, "path", d.path)
		}
		return
	}
	if old != nil && old.id == id {
		return
	}
	h, err := d.load()
	if err != nil {
		d.log.Error("geo: new database file rejected; still using the previous one", "setting", d.setting, "path", d.path, "err", err)
		return
	}
	d.cur.Store(h)
	d.log.Info("geo: database loaded", "setting", d.setting, "path", d.path, "schema", h.schema.String(),
		"database_type", h.r.Metadata.DatabaseType, "built", h.r.Metadata.BuildTime().UTC().Format(time.RFC3339))
}

// detectSchema decides the record layout from the metadata when it is an
// official type, else from the first records that carry data.
func detectSchema(r *maxminddb.Reader) (schema, error) {
	t := r.Metadata.DatabaseType
	switch {
	case strings.Contains(t, "ASN"):
		return schemaASN, nil
	case (strings.HasPrefix(t, "GeoIP2-") || strings.HasPrefix(t, "GeoLite2-")) &&
		(strings.Contains(t, "Country") || strings.Contains(t, "City") || strings.Contains(t, "Enterprise")):
		return schemaGeoIP2, nil
	}
	seen := 0
	for res := range r.Networks() {
		var rec map[string]any
		if err := res.Decode(&rec); err != nil {
			return 0, fmt.Errorf("decoding a record: %v", err)
		}
		if _, ok := rec["country_code"]; ok {
			return schemaFlat, nil
		}
		if c, ok := rec["country"].(map[string]any); ok {
			if _, ok := c["iso_code"]; ok {
				return schemaGeoIP2, nil
			}
		}
		if c, ok := rec["registered_country"].(map[string]any); ok {
			if _, ok := c["iso_code"]; ok {
				return schemaGeoIP2, nil
			}
		}
		if _, ok := rec["autonomous_system_number"]; ok {
			return schemaASN, nil
		}
		if seen++; seen > 1000 {
			break
		}
	}
	return 0, errors.New("no record has country.iso_code, country_code or autonomous_system_number")
}

// geoip2Country is the part of a GeoIP2 record sipsentry reads.
type geoip2Country struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// country returns the ISO code for a: "?" without a database, "" when the
// database has no country for a.
func (d *dbFile) country(a netip.Addr) string {
	h := d.handle()
	if h == nil {
		return "?"
	}
	cc := h.country(a)
	runtime.KeepAlive(h) // the mapping must outlive every read of it
	return cc
}

func (h *dbHandle) country(a netip.Addr) string {
	res := h.r.Lookup(a)
	if !res.Found() {
		return ""
	}
	off := res.Offset()
	slot := &h.cc[(uint64(off)*0x9E3779B97F4A7C15)>>(64-ccCacheBits)]
	if e := slot.Load(); e != nil && e.off == off {
		return e.cc
	}
	cc, err := decodeCountry(res, h.schema)
	if err != nil {
		return ""
	}
	slot.Store(&ccEntry{off, cc})
	return cc
}

func decodeCountry(res maxminddb.Result, s schema) (string, error) {
	if s == schemaFlat {
		var cc string
		err := res.DecodePath(&cc, "country_code")
		return cc, err
	}
	var rec geoip2Country
	if err := res.Decode(&rec); err != nil {
		return "", err
	}
	// Anycast and satellite ranges have no physical country; the
	// registration country is still a useful second opinion.
	if rec.Country.ISOCode != "" {
		return rec.Country.ISOCode, nil
	}
	return rec.RegisteredCountry.ISOCode, nil
}

type asnRecord struct {
	Number uint   `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

func (d *dbFile) asn(a netip.Addr) (uint, string) {
	h := d.handle()
	if h == nil {
		return 0, ""
	}
	var rec asnRecord
	err := h.r.Lookup(a).Decode(&rec)
	runtime.KeepAlive(h) // the mapping must outlive every read of it
	if err != nil {
		return 0, ""
	}
	return rec.Number, rec.Org
}

func (d *dbFile) handle() *dbHandle {
	if d == nil {
		return nil
	}
	return d.cur.Load()
}

// info describes the loaded database for status output.
func (d *dbFile) info() DBInfo {
	if d == nil || d.path == "" {
		return DBInfo{}
	}
	in := DBInfo{Setting: d.setting, Path: d.path}
	if h := d.handle(); h != nil {
		in.Loaded = true
		in.Schema = h.schema.String()
		in.DatabaseType = h.r.Metadata.DatabaseType
		in.Built = h.r.Metadata.BuildTime().UTC()
	}
	return in
}

// DBInfo describes one configured mmdb file.
type DBInfo struct {
	Setting, Path        string
	Loaded               bool
	Schema, DatabaseType string
	Built                time.Time
}
