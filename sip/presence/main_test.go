package presence

import (
	"testing"

	"github.com/callstate/callstate/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
