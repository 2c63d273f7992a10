package redislayer

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/rueidis"
)

// Redis Cluster mode (Config.Cluster).
//
// Every key the layer writes carries a hash tag, so that what one call
// touches lives in one hash slot: a channel's key and its expiry markers
// (and, for process-specific channels, the count hash) share the tag of
// the channel name, or of its process prefix:
//
//	<prefix>{http.request}                       ordinary channel
//	<prefix>{websocket.send.ID!}                 process-specific channels of one process
//	<prefix>:count:{websocket.send.ID!}          their counts
//	<prefix>:expired:{http.request}              expiry marker of a channel
//	<prefix>:expired:{websocket.send.ID!}abc     expiry marker of a process-specific channel
//	<prefix>:group:{chat}                        a group
//
// Redis routes each key to the node that serves its slot; the rueidis
// cluster client follows MOVED and ASK redirections and fail-overs.
// Multi-key calls are split by slot: send batches (one MULTI per slot),
// pops over several channels (one ZMPOP, or one blocking pop on a
// connection of its own, per slot), and group sends (the members read from
// the group's slot, then one delivery call per slot holding members, in
// parallel, then evictions on the group's slot). Blocking pops run on
// connections to the node that serves their slot, so that CLIENT UNBLOCK
// reaches the right server.

// slotCount is the number of hash slots of a Redis Cluster.
const slotCount = 16384

// keySlot returns the hash slot of a key: CRC16 (XMODEM) of its hash tag
// (the part between the first '{' and the next '}', when not empty) or of
// the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % slotCount
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotGroups splits keys into groups of one hash slot each, keeping their
// order within a group, in the order their slots first appear. Outside
// Cluster mode all keys are one group.
func (l *Layer) slotGroups(keys []string) [][]string {
	if !l.s.cluster || len(keys) <= 1 {
		return [][]string{keys}
	}
	var groups [][]string
	var slots []uint16
	for _, k := range keys {
		s := keySlot(k)
		i := 0
		for i < len(slots) && slots[i] != s {
			i++
		}
		if i == len(slots) {
			slots = append(slots, s)
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], k)
	}
	return groups
}

// nodes maps hash slots to the addresses of the nodes that serve them,
// for the connections of blocking pops.
type nodes struct {
	mu      sync.Mutex
	slots   [slotCount]string
	clients map[string]rueidis.Client
	loaded  bool
}

// nodeFor returns the address of the node serving slot and a client for
// it, reading the cluster's slot map when it is not known yet (or refresh
// is set, after a MOVED reply).
func (sh *shard) nodeFor(ctx context.Context, slot uint16, refresh bool) (string, rueidis.Client, error) {
	n := &sh.nodes
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.loaded || refresh || n.slots[slot] == "" {
		if err := sh.loadSlots(ctx); err != nil {
			return "", nil, err
		}
	}
	addr := n.slots[slot]
	if addr == "" {
		return "", nil, fmt.Errorf("no node serves hash slot %d", slot)
	}
	c := n.clients[addr]
	if c == nil {
		c = sh.client.Nodes()[addr]
		if c == nil {
			return "", nil, fmt.Errorf("no connection to node %s", addr)
		}
		if n.clients == nil {
			n.clients = map[string]rueidis.Client{}
		}
		n.clients[addr] = c
	}
	return addr, c, nil
}

// loadSlots reads the slot map with CLUSTER SLOTS. Called with nodes.mu
// held.
func (sh *shard) loadSlots(ctx context.Context) error {
	cctx, cancel := sh.l.s.withTimeout(ctx)
	defer cancel()
	c := sh.client
	arr, err := c.Do(cctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return err
	}
	n := &sh.nodes
	n.slots = [slotCount]string{}
	n.clients = nil
	for _, r := range arr {
		e, err := r.ToArray()
		if err != nil || len(e) < 3 {
			continue
		}
		lo, _ := e[0].AsInt64()
		hi, _ := e[1].AsInt64()
		master, err := e[2].ToArray()
		if err != nil || len(master) < 2 {
			continue
		}
		host, _ := master[0].ToString()
		port, _ := master[1].AsInt64()
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		for s := lo; s <= hi && s < slotCount; s++ {
			n.slots[s] = addr
		}
	}
	n.loaded = true
	return nil
}

// slotBatcher returns the send batcher of one hash slot.
func (sh *shard) slotBatcher(slot uint16) *batcher {
	if b, ok := sh.slotBatchers.Load(slot); ok {
		return b.(*batcher)
	}
	b, _ := sh.slotBatchers.LoadOrStore(slot, &batcher{sh: sh})
	return b.(*batcher)
}
