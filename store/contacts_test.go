package store_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
)

// TestAddContactsImportTwice imports a real vCard export twice: the second
// time changes nothing, and a contact that gains a number keeps its old ones.
func TestAddContactsImportTwice(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	plan, _ := callstate.NewNumberPlan("DE")
	f, err := os.Open("../testdata/contacts-iphone.vcf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, err := callstate.ParseContacts(f, plan)
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := st.AddContacts(ctx, file.Contacts)
	if err != nil || n != (store.ContactsAdded{Added: 3}) {
		t.Fatalf("first import: %+v, %v", n, err)
	}
	v1, _ := st.ContactsVersion(ctx)
	_, n, err = st.AddContacts(ctx, file.Contacts)
	if err != nil || n != (store.ContactsAdded{Unchanged: 3}) {
		t.Fatalf("second import: %+v, %v", n, err)
	}
	if v2, _ := st.ContactsVersion(ctx); v2 != v1 {
		t.Errorf("version changed on an import that changed nothing: %q, %q", v1, v2)
	}
	got, n, err := st.AddContacts(ctx, []callstate.Contact{{Name: "Ben Schmidt", Numbers: []string{"4915112345678", "49895678123"}}})
	if err != nil || n != (store.ContactsAdded{Updated: 1}) {
		t.Fatalf("new number: %+v, %v", n, err)
	}
	if want := []string{"49895678123", "4915112345678"}; !reflect.DeepEqual(got[0].Numbers, want) {
		t.Errorf("numbers %q, want %q", got[0].Numbers, want)
	}
	if v3, _ := st.ContactsVersion(ctx); v3 == v1 {
		t.Error("version did not change with a new number")
	}
	all, err := st.Contacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range all {
		names = append(names, c.Name)
	}
	if want := "Anna-Lena Becker,Ben Schmidt,Zentrale Notdienst"; strings.Join(names, ",") != want {
		t.Errorf("contacts %q, want %s", names, want)
	}
}

func TestAddContactsErrInvalidContact(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	_, _, err := st.AddContacts(ctx, []callstate.Contact{
		{Name: "Anna", Numbers: []string{"4916012345678"}},
		{Name: "Bad", Numbers: []string{"+4916012345678"}},
	})
	if !errors.Is(err, callstate.ErrInvalidContact) {
		t.Fatalf("got %v, want ErrInvalidContact", err)
	}
	if all, _ := st.Contacts(ctx); len(all) != 0 {
		t.Errorf("stored %v of a refused import", all)
	}
	many := make([]string, callstate.MaxContactNumbers)
	for i := range many {
		many[i] = "49301234" + string(rune('0'+i/10)) + string(rune('0'+i%10))
	}
	if _, _, err := st.AddContacts(ctx, []callstate.Contact{{Name: "Anna", Numbers: many}}); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.AddContacts(ctx, []callstate.Contact{{Name: "Anna", Numbers: []string{"4916012345678"}}})
	if !errors.Is(err, callstate.ErrInvalidContact) {
		t.Errorf("21st number: got %v, want ErrInvalidContact", err)
	}
}

// TestAddContactsGroups: groups are added like numbers: a contact added
// again gains the groups it lacks (in any case only once) and loses none.
func TestAddContactsGroups(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	got, n, err := st.AddContacts(ctx, []callstate.Contact{{Name: "Vera", Numbers: []string{"491701111111"}, Groups: []string{"VIP"}}})
	if err != nil || n.Added != 1 || !reflect.DeepEqual(got[0].Groups, []string{"VIP"}) {
		t.Fatalf("add: %+v %+v %v", got, n, err)
	}
	got, n, err = st.AddContacts(ctx, []callstate.Contact{{Name: "Vera", Numbers: []string{"491701111111"}, Groups: []string{"vip"}}})
	if err != nil || n.Unchanged != 1 || !reflect.DeepEqual(got[0].Groups, []string{"VIP"}) {
		t.Fatalf("same group in another case: %+v %+v %v", got, n, err)
	}
	got, n, err = st.AddContacts(ctx, []callstate.Contact{{Name: "Vera", Numbers: []string{"491701111111"}, Groups: []string{"Customers"}}})
	if err != nil || n.Updated != 1 || !reflect.DeepEqual(got[0].Groups, []string{"VIP", "Customers"}) {
		t.Fatalf("new group: %+v %+v %v", got, n, err)
	}
	all, err := st.Contacts(ctx)
	if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0].Groups, []string{"VIP", "Customers"}) {
		t.Fatalf("contacts %+v, %v", all, err)
	}
	if _, _, err := st.AddContacts(ctx, []callstate.Contact{{Name: "Bad", Numbers: []string{"4930123"}, Groups: []string{" padded "}}}); !errors.Is(err, callstate.ErrInvalidContact) {
		t.Errorf("bad group: got %v, want ErrInvalidContact", err)
	}
}
