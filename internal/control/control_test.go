package control

import (
	"slices"
	"testing"

	"github.com/caddy-notify/notify/internal/message"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		msg                         string
		users, groups               []string
		all                         bool
		invalidUsers, invalidGroups int
		drop                        message.Drop
	}{
		{msg: `{"disconnect":42}`, users: []string{"42"}},
		{msg: `{"disconnect":"alice"}`, users: []string{"alice"}},
		{msg: `{"disconnect":"*"}`, all: true},
		{msg: `{"disconnect":["*"]}`, invalidUsers: 1},
		{msg: `{"disconnect":["*","alice",true]}`, users: []string{"alice"}, invalidUsers: 2},
		{msg: `{"disconnect":[42,"alice"]}`, users: []string{"42", "alice"}},
		{msg: `{"disconnect":true}`, invalidUsers: 1},
		{msg: `{"disconnect_group":"org:7"}`, groups: []string{"org:7"}},
		{msg: `{"disconnect_group":["org:7",8,"","org:8"]}`, groups: []string{"org:7", "org:8"}, invalidGroups: 2},
		{msg: `{"disconnect_group":"*"}`, groups: []string{"*"}}, // a group's name, not everyone
		{msg: `{"disconnect":"bob","disconnect_group":"org:7"}`, users: []string{"bob"}, groups: []string{"org:7"}},
		{msg: `{"disconnect_group":null}`, drop: message.NoRecipient},
		{msg: `{}`, drop: message.NoRecipient},
		{msg: `{"disconnect":[]}`, drop: message.NoRecipient},
		{msg: `{"disconnect":`, drop: message.Malformed},
		{msg: `[]`, drop: message.Malformed},
	} {
		o, drop := parse([]byte(tt.msg))
		if drop != tt.drop || !slices.Equal(o.users, tt.users) || !slices.Equal(o.groups, tt.groups) || o.all != tt.all ||
			o.invalidUsers != tt.invalidUsers || o.invalidGroups != tt.invalidGroups {
			t.Errorf("%s: got %+v, %q", tt.msg, o, drop)
		}
	}
}

// FuzzParse: any payload parses without a panic; "*" means everyone only
// as the whole value; an order always names something or is dropped.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"disconnect":42}`, `{"disconnect":["*"]}`, `{"disconnect_group":["a",1]}`, `{"disconnect":"*"}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		o, drop := parse(payload)
		if drop != "" {
			if o.all || o.users != nil || o.groups != nil {
				t.Fatalf("a dropped order names %+v", o)
			}
			return
		}
		if !o.all && len(o.users)+len(o.groups)+o.invalidUsers+o.invalidGroups == 0 {
			t.Fatalf("an order naming nothing: %+v", o)
		}
		if slices.Contains(o.users, message.Broadcast) {
			t.Fatalf("* as a user: %+v", o)
		}
	})
}
