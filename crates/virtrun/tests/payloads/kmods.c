/* Needs kernel modules the guest was not given: creates a veth pair over
 * rtnetlink (the kernel asks for "rtnl-link-veth") and hashes with AF_ALG
 * (it asks for "net-pf-38", then "algif-hash"); a link of a kind no module
 * provides fails as on any system. Prints one line each. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_alg.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct req {
	struct nlmsghdr nh;
	struct ifinfomsg ifi;
	char attrs[512];
};

static struct rtattr *put(struct nlmsghdr *nh, int type, const void *data, int len) {
	struct rtattr *rta = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));
	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	if (len) memcpy(RTA_DATA(rta), data, len);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
	return rta;
}

static void end(struct nlmsghdr *nh, struct rtattr *nest) {
	nest->rta_len = (char *)nh + nh->nlmsg_len - (char *)nest;
}

/* Creates link `name` of `kind`, with peer vt1 for a veth. */
static int link_add(const char *kind, const char *name) {
	int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (fd < 0) return -errno;
	struct req r;
	memset(&r, 0, sizeof r);
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof r.ifi);
	r.nh.nlmsg_type = RTM_NEWLINK;
	r.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
	put(&r.nh, IFLA_IFNAME, name, strlen(name) + 1);
	struct rtattr *info = put(&r.nh, IFLA_LINKINFO, NULL, 0);
	put(&r.nh, IFLA_INFO_KIND, kind, strlen(kind) + 1);
	if (strcmp(kind, "veth") == 0) {
		struct rtattr *data = put(&r.nh, IFLA_INFO_DATA, NULL, 0);
		struct rtattr *peer = put(&r.nh, VETH_INFO_PEER, NULL, 0);
		r.nh.nlmsg_len += sizeof(struct ifinfomsg);
		put(&r.nh, IFLA_IFNAME, "vt1", 4);
		end(&r.nh, peer);
		end(&r.nh, data);
	}
	end(&r.nh, info);
	if (send(fd, &r, r.nh.nlmsg_len, 0) < 0) return -errno;
	char buf[4096];
	int n = recv(fd, buf, sizeof buf, 0);
	close(fd);
	if (n < 0) return -errno;
	struct nlmsghdr *ack = (struct nlmsghdr *)buf;
	if (ack->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(ack))->error;
	return 0;
}

static int alg(char *hex) {
	int fd = socket(AF_ALG, SOCK_SEQPACKET, 0);
	if (fd < 0) return -errno;
	struct sockaddr_alg sa = {.salg_family = AF_ALG};
	strcpy((char *)sa.salg_type, "hash");
	strcpy((char *)sa.salg_name, "sha256");
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -errno;
	int op = accept(fd, NULL, 0);
	if (op < 0) return -errno;
	unsigned char sum[32];
	if (write(op, "abc", 3) != 3 || read(op, sum, 32) != 32) return -errno;
	for (int i = 0; i < 4; i++) sprintf(hex + 2 * i, "%02x", sum[i]);
	return 0;
}

int main(void) {
	int v = link_add("veth", "vt0");
	printf("veth: %s\n", v == 0 && if_nametoindex("vt1") ? "ok" : strerror(-v));
	int none = link_add("virtrun-none", "vt2");
	printf("unknown kind: %s\n", none == 0 ? "created?" : strerror(-none));
	char hex[9] = "";
	int a = alg(hex);
	printf("af_alg sha256(abc): %s\n", a == 0 ? hex : strerror(-a));
	return v != 0 || a != 0;
}
