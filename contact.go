package callstate

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Contact is one entry of the phonebook: a person or a company, the
// numbers that are theirs, in the stored form (see NumberPlan), and the
// groups it belongs to (VIP, suppliers), which routing rules can match.
// Calls from and to those numbers show the name.
type Contact struct {
	ID        int64
	Name      string
	Numbers   []string
	Groups    []string
	UpdatedAt time.Time
}

// ContactsAdded counts what adding contacts to the phonebook did.
type ContactsAdded struct {
	Added     int // new contacts
	Updated   int // contacts of a known name that got more numbers
	Unchanged int // contacts known with all these numbers already
}

// Limits of a contact.
const (
	MaxContactName    = 200
	MaxContactNumbers = 20
	MaxContactGroups  = 20
	MaxGroupName      = 100
)

// ErrInvalidContact is wrapped by the errors of Contact.Validate and
// ParseContacts.
var ErrInvalidContact = errors.New("invalid contact")

// Validate reports whether c can be stored: a name of text (no control
// characters) up to MaxContactName characters, 1 to MaxContactNumbers
// numbers, each in the stored form, and up to MaxContactGroups groups,
// each a text up to MaxGroupName characters. It returns an error wrapping
// ErrInvalidContact that says what is wrong.
func (c Contact) Validate() error {
	switch {
	case strings.TrimSpace(c.Name) == "":
		return fmt.Errorf("%w: no name", ErrInvalidContact)
	case utf8.RuneCountInString(c.Name) > MaxContactName:
		return fmt.Errorf("%w: name longer than %d characters", ErrInvalidContact, MaxContactName)
	case !isText(c.Name):
		return fmt.Errorf("%w: name has control characters or is not UTF-8", ErrInvalidContact)
	case len(c.Numbers) == 0:
		return fmt.Errorf("%w: %q has no number", ErrInvalidContact, c.Name)
	case len(c.Numbers) > MaxContactNumbers:
		return fmt.Errorf("%w: %q has more than %d numbers", ErrInvalidContact, c.Name, MaxContactNumbers)
	}
	for _, n := range c.Numbers {
		if n == "" || len(n) > 20 || strings.Trim(n, "0123456789") != "" {
			return fmt.Errorf("%w: %q: number %q is not in the stored form (digits only)", ErrInvalidContact, c.Name, n)
		}
	}
	if len(c.Groups) > MaxContactGroups {
		return fmt.Errorf("%w: %q is in more than %d groups", ErrInvalidContact, c.Name, MaxContactGroups)
	}
	for _, g := range c.Groups {
		if strings.TrimSpace(g) != g || g == "" || utf8.RuneCountInString(g) > MaxGroupName || !isText(g) {
			return fmt.Errorf("%w: %q: group %q must be a text of 1 to %d characters without outer spaces or control characters",
				ErrInvalidContact, c.Name, g, MaxGroupName)
		}
	}
	return nil
}

// WithGroups returns c with groups added, each trimmed and once (groups
// that differ in case only are one); empty ones are left out.
func (c Contact) WithGroups(groups ...string) Contact {
	c.Groups = slices.Clone(c.Groups)
	for _, g := range groups {
		g = strings.Join(strings.Fields(g), " ")
		if g == "" || slices.ContainsFunc(c.Groups, func(h string) bool { return strings.EqualFold(g, h) }) {
			continue
		}
		c.Groups = append(c.Groups, g)
	}
	return c
}

// NewContact returns the contact of name with the numbers as people write
// them, normalized by plan, each once; a name's outer spaces are trimmed.
// It returns an error wrapping ErrInvalidContact or ErrBadNumber.
func NewContact(plan NumberPlan, name string, numbers []string) (Contact, error) {
	c := Contact{Name: strings.TrimSpace(name)}
	for _, raw := range numbers {
		n, err := plan.Normalize(raw)
		if err != nil {
			return Contact{}, fmt.Errorf("%q: %w", c.Name, err)
		}
		if !slices.Contains(c.Numbers, n) {
			c.Numbers = append(c.Numbers, n)
		}
	}
	return c, c.Validate()
}

// isText reports whether s is valid UTF-8 without control characters
// (bidirectional controls and line separators included), what can be shown
// on a board as it is.
func isText(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || unicode.In(r, unicode.Zl, unicode.Zp)
	}) < 0
}

// ContactFile is what ParseContacts read from a file.
type ContactFile struct {
	Format   string    // "csv" or "vcard"
	Contacts []Contact // valid ones, in the file's order; two of one name merged
	Skipped  []string  // why each record or number left out was left out, with its line
}

// MaxContactFileBytes bounds what ParseContacts reads.
const MaxContactFileBytes = 32 << 20

// ParseContacts reads a phonebook export: vCard (2.1, 3.0 or 4.0: FN or
// N, every TEL) or CSV with a header line (comma or semicolon separated;
// a name column such as Name, Full Name or Display Name, or First Name and
// Last Name; every column whose header names a phone, mobile, telephone or
// number, such as Google's "Phone 1 - Value" or Outlook's "Mobile Phone").
// Numbers are normalized by plan. A record without a name or a valid
// number is skipped, and so is a bad number, each with a line in Skipped;
// the file fails as a whole (an error wrapping ErrInvalidContact) only
// when it is neither format, is larger than MaxContactFileBytes, or holds
// no contact at all.
func ParseContacts(r io.Reader, plan NumberPlan) (ContactFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxContactFileBytes+1))
	if err != nil {
		return ContactFile{}, fmt.Errorf("read contacts: %w", err)
	}
	if len(data) > MaxContactFileBytes {
		return ContactFile{}, fmt.Errorf("%w: file larger than %d MiB", ErrInvalidContact, MaxContactFileBytes>>20)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return ContactFile{}, fmt.Errorf("%w: file is not UTF-8 text", ErrInvalidContact)
	}
	var f ContactFile
	if bytes.HasPrefix(bytes.ToUpper(bytes.TrimLeft(data, " \t\r\n")), []byte("BEGIN:VCARD")) {
		f.Format = "vcard"
		parseVCards(data, plan, &f)
	} else {
		f.Format = "csv"
		if err := parseContactCSV(data, plan, &f); err != nil {
			return ContactFile{}, err
		}
	}
	if len(f.Contacts) == 0 {
		why := ""
		if len(f.Skipped) > 0 {
			why = " (first problem: " + f.Skipped[0] + ")"
		}
		return f, fmt.Errorf("%w: no contact with a name and a number in the %s file%s", ErrInvalidContact, f.Format, why)
	}
	return f, nil
}

// add adds one record: its valid numbers, merged into an earlier contact
// of the same name.
func (f *ContactFile) add(plan NumberPlan, line int, name string, numbers, groups []string) {
	name = strings.Join(strings.Fields(name), " ")
	if name == "" {
		if len(numbers) > 0 {
			f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: no name", line))
		}
		return
	}
	var good []string
	for _, raw := range numbers {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		n, err := plan.Normalize(raw)
		if err != nil {
			f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %s: %v", line, name, err))
			continue
		}
		good = append(good, n)
	}
	i := slices.IndexFunc(f.Contacts, func(c Contact) bool { return c.Name == name })
	var c Contact
	if i >= 0 {
		c = f.Contacts[i]
	}
	c.Name = name
	c = c.WithGroups(groups...)
	if len(c.Groups) > MaxContactGroups {
		c.Groups = c.Groups[:MaxContactGroups]
		f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %s: groups past the first %d left out", line, name, MaxContactGroups))
	}
	c.Groups = slices.DeleteFunc(c.Groups, func(g string) bool {
		if utf8.RuneCountInString(g) <= MaxGroupName && isText(g) {
			return false
		}
		f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %s: a group left out (over %d characters, or control characters)", line, name, MaxGroupName))
		return true
	})
	for _, n := range good {
		if !slices.Contains(c.Numbers, n) {
			c.Numbers = append(c.Numbers, n)
		}
	}
	if len(c.Numbers) > MaxContactNumbers {
		c.Numbers = c.Numbers[:MaxContactNumbers]
		f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %s: numbers past the first %d left out", line, name, MaxContactNumbers))
	}
	if err := c.Validate(); err != nil {
		switch {
		case len(c.Numbers) == 0 && i < 0 && len(good) == 0 && len(f.Skipped) > 0 && strings.HasPrefix(f.Skipped[len(f.Skipped)-1], fmt.Sprintf("line %d: ", line)):
			// its numbers were bad, and said so
		case len(c.Numbers) == 0:
			f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %s: no number", line, name))
		default:
			f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %v", line, err))
		}
		return
	}
	if i >= 0 {
		f.Contacts[i] = c
	} else {
		f.Contacts = append(f.Contacts, c)
	}
}

func parseContactCSV(data []byte, plan NumberPlan, f *ContactFile) error {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	rd := csv.NewReader(bytes.NewReader(data))
	if bytes.Count(first, []byte(";")) > bytes.Count(first, []byte(",")) {
		rd.Comma = ';'
	}
	rd.FieldsPerRecord = -1
	rd.LazyQuotes = true
	header, err := rd.Read()
	if err != nil {
		return fmt.Errorf("%w: CSV header: %v", ErrInvalidContact, err)
	}
	name, given, family, org := -1, -1, -1, -1
	var phones, groups []int
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "group" || h == "groups" || h == "labels" || h == "categories" || h == "category" ||
			h == "gruppe" || h == "gruppen" || h == "kategorien" || h == "group membership":
			groups = append(groups, i)
		case h == "name" || h == "full name" || h == "display name" || h == "fn" || h == "anzeigename":
			if name < 0 {
				name = i
			}
		case h == "first name" || h == "given name" || h == "vorname":
			given = i
		case h == "last name" || h == "family name" || h == "surname" || h == "nachname":
			family = i
		case h == "company" || h == "organization" || h == "organization name" || h == "organization 1 - name" || h == "firma":
			if org < 0 {
				org = i
			}
		case strings.Contains(h, "type") || strings.Contains(h, "label") || strings.Contains(h, "typ") || strings.Contains(h, "fax"):
		case strings.Contains(h, "phone") || strings.Contains(h, "mobile") || strings.Contains(h, "tel") ||
			strings.Contains(h, "number") || strings.Contains(h, "nummer") || strings.Contains(h, "handy"):
			phones = append(phones, i)
		}
	}
	if name < 0 && given < 0 && family < 0 && org < 0 {
		return fmt.Errorf("%w: the CSV header has no name column (Name, Full Name, Display Name, or First Name and Last Name); it has %q",
			ErrInvalidContact, header)
	}
	if len(phones) == 0 {
		return fmt.Errorf("%w: the CSV header has no phone column (Phone, Mobile, Telephone, Number, Phone 1 - Value ...); it has %q",
			ErrInvalidContact, header)
	}
	col := func(rec []string, i int) string {
		if i < 0 || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	for {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		line, _ := rd.FieldPos(0)
		if err != nil {
			f.Skipped = append(f.Skipped, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		n := col(rec, name)
		if n == "" {
			n = strings.TrimSpace(col(rec, given) + " " + col(rec, family))
		}
		if n == "" {
			n = col(rec, org)
		}
		var nums []string
		for _, i := range phones {
			// Google puts several numbers of one label in one cell.
			for _, v := range strings.Split(col(rec, i), ":::") {
				nums = append(nums, strings.TrimSpace(v))
			}
		}
		var gs []string
		for _, i := range groups {
			gs = append(gs, splitGroups(col(rec, i))...)
		}
		f.add(plan, line, n, nums, gs)
	}
}

// splitGroups reads a cell of groups: Google's "VIP ::: * myContacts",
// Outlook's "VIP;Suppliers", or "VIP, Suppliers". Google's own labels
// (starting "* ") are left out.
func splitGroups(cell string) []string {
	var out []string
	for _, g := range strings.FieldsFunc(cell, func(r rune) bool { return r == ';' || r == ',' }) {
		for _, g := range strings.Split(g, ":::") {
			g = strings.TrimSpace(g)
			if g != "" && !strings.HasPrefix(g, "* ") {
				out = append(out, g)
			}
		}
	}
	return out
}

// parseVCards reads every BEGIN:VCARD ... END:VCARD of data.
func parseVCards(data []byte, plan NumberPlan, f *ContactFile) {
	type card struct {
		line        int
		fn, n, org  string
		tels        []string
		categories  []string
		inside      bool
		sawAnything bool
	}
	var c card
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxContactFileBytes)
	var logical []string // unfolded lines with their first line number
	var lines []int
	no := 0
	for sc.Scan() {
		no++
		l := strings.TrimRight(sc.Text(), "\r")
		switch {
		case (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(logical) > 0:
			logical[len(logical)-1] += l[1:] // folded (RFC 6350 3.2)
		case strings.HasSuffix(l, "=") && strings.Contains(strings.ToUpper(l), "QUOTED-PRINTABLE") && len(l) > 1:
			logical, lines = append(logical, l), append(lines, no) // 2.1 soft line break follows
			for strings.HasSuffix(logical[len(logical)-1], "=") && sc.Scan() {
				no++
				last := logical[len(logical)-1]
				logical[len(logical)-1] = last[:len(last)-1] + strings.TrimRight(sc.Text(), "\r")
			}
		default:
			logical, lines = append(logical, l), append(lines, no)
		}
	}
	for i, l := range logical {
		prop, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		params := strings.Split(prop, ";")
		pname := strings.ToUpper(params[0])
		if g := strings.LastIndexByte(pname, '.'); g >= 0 { // item1.TEL
			pname = pname[g+1:]
		}
		switch pname {
		case "BEGIN":
			if strings.EqualFold(value, "VCARD") {
				c = card{line: lines[i], inside: true}
			}
			continue
		case "END":
			if strings.EqualFold(value, "VCARD") && c.inside {
				name := c.fn
				if name == "" {
					parts := strings.Split(c.n, ";") // family;given;additional;prefix;suffix
					for len(parts) < 5 {
						parts = append(parts, "")
					}
					name = strings.Join(strings.Fields(strings.Join([]string{parts[3], parts[1], parts[2], parts[0], parts[4]}, " ")), " ")
				}
				if name == "" {
					name = c.org
				}
				f.add(plan, c.line, name, c.tels, c.categories)
				c = card{}
			}
			continue
		}
		if !c.inside {
			continue
		}
		value = vcardValue(params[1:], value)
		switch pname {
		case "FN":
			c.fn = value
		case "N":
			c.n = value
		case "ORG":
			c.org, _, _ = strings.Cut(value, ";")
		case "TEL":
			c.tels = append(c.tels, value)
		case "CATEGORIES":
			c.categories = append(c.categories, splitGroups(value)...)
		}
	}
}

// vcardValue decodes a property value: quoted-printable (vCard 2.1), and
// the backslash escapes of 3.0 and 4.0.
func vcardValue(params []string, v string) string {
	for _, p := range params {
		if strings.EqualFold(p, "ENCODING=QUOTED-PRINTABLE") || strings.EqualFold(p, "QUOTED-PRINTABLE") {
			if b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(v))); err == nil && utf8.Valid(b) {
				v = string(b)
			}
		}
	}
	r := strings.NewReplacer(`\,`, ",", `\;`, ";", `\\`, `\`, `\n`, " ", `\N`, " ")
	return strings.TrimSpace(r.Replace(v))
}
