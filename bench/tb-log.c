/*
 * A QEMU TCG plugin for scripts/bench (section "translations"): logs every
 * translation block QEMU translates, one line "<guest vaddr hex> <insns>",
 * to the file named by $TB_LOG. Written unbuffered: virtrun ends QEMU with
 * SIGKILL, which no buffer would survive.
 *
 * Under emulation a restored guest spends most of its time having its code
 * translated anew (QEMU keeps no translations across a restore), so the count
 * of blocks a warm run translates tells its cost far more steadily than its
 * wall time does.
 *
 * Only the few plugin API calls used are declared here; they have kept their
 * signatures since the API's first version. Built with:
 *   gcc -shared -fPIC -O2 -o tb-log.so tb-log.c
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
} qemu_info_t;
struct qemu_plugin_tb;
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);

__attribute__((visibility("default"))) int qemu_plugin_version = 2;

static int out = -1;

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	char line[48];
	int n = snprintf(line, sizeof line, "%llx %zu\n",
			 (unsigned long long)qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb));
	if (write(out, line, n) != n)
		return;
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
							       int argc, char **argv)
{
	const char *path = getenv("TB_LOG");
	if (!path)
		return -1;
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	return 0;
}
