package cluster

import (
	"fmt"
	"sort"
	"strings"
)

// memberUp is true for a member that answered for itself or that gossip
// sees alive.
func memberUp(m MemberStatus) bool { return m.Answered || m.Alive }

// RemoveRefusal says why removing name needs force, or "" when it does
// not: name is the active node (the service and the VIP go with it), or a
// voter whose removal leaves fewer than a majority of the remaining voters
// alive (the cluster would lose its quorum).
func RemoveRefusal(st Status, name string) string {
	var why []string
	if st.Active.Node == name {
		why = append(why, fmt.Sprintf("%s is the active node: removing it stops the service there and moves the VIP only after its lease runs out; hand over first (newbieha failover --to NODE)", name))
	}
	var target *MemberStatus
	voters, up := 0, 0
	var down []string
	for i, m := range st.Members {
		if m.Name == name {
			target = &st.Members[i]
			continue
		}
		if !m.Voter {
			continue
		}
		voters++
		if memberUp(m) {
			up++
		} else {
			down = append(down, m.Name)
		}
	}
	if target != nil && target.Voter && voters > 0 && up <= voters/2 {
		sort.Strings(down)
		why = append(why, fmt.Sprintf("%s is a voter: without it %d of the %d remaining voters are alive (%s down), fewer than the majority of %d the cluster needs to commit anything", name, up, voters, strings.Join(down, ", "), voters/2+1))
	}
	return strings.Join(why, "; and ")
}
