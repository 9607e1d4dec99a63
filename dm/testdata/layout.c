/* Prints the dm-ioctl ABI facts the dm package hard-codes, from the kernel
 * header, one "name value" pair a line. Used by TestLayoutMatchesKernelHeader. */
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/dm-ioctl.h>

int main(void) {
	printf("headerSize %zu\n", sizeof(struct dm_ioctl));
	printf("specSize %zu\n", sizeof(struct dm_target_spec));
	printf("nameListName %zu\n", offsetof(struct dm_name_list, name));
	printf("offName %zu\n", offsetof(struct dm_ioctl, name));
	printf("offUUID %zu\n", offsetof(struct dm_ioctl, uuid));
	printf("offDev %zu\n", offsetof(struct dm_ioctl, dev));
	printf("offFlags %zu\n", offsetof(struct dm_ioctl, flags));
	printf("specNext %zu\n", offsetof(struct dm_target_spec, next));
	printf("specType %zu\n", offsetof(struct dm_target_spec, target_type));
	printf("DM_VERSION %lu\n", (unsigned long)DM_VERSION);
	printf("DM_LIST_DEVICES %lu\n", (unsigned long)DM_LIST_DEVICES);
	printf("DM_DEV_CREATE %lu\n", (unsigned long)DM_DEV_CREATE);
	printf("DM_DEV_REMOVE %lu\n", (unsigned long)DM_DEV_REMOVE);
	printf("DM_DEV_SUSPEND %lu\n", (unsigned long)DM_DEV_SUSPEND);
	printf("DM_DEV_STATUS %lu\n", (unsigned long)DM_DEV_STATUS);
	printf("DM_TABLE_LOAD %lu\n", (unsigned long)DM_TABLE_LOAD);
	printf("DM_TABLE_STATUS %lu\n", (unsigned long)DM_TABLE_STATUS);
	printf("DM_READONLY_FLAG %lu\n", (unsigned long)DM_READONLY_FLAG);
	printf("DM_SUSPEND_FLAG %lu\n", (unsigned long)DM_SUSPEND_FLAG);
	printf("DM_STATUS_TABLE_FLAG %lu\n", (unsigned long)DM_STATUS_TABLE_FLAG);
	printf("DM_ACTIVE_PRESENT_FLAG %lu\n", (unsigned long)DM_ACTIVE_PRESENT_FLAG);
	printf("DM_INACTIVE_PRESENT_FLAG %lu\n", (unsigned long)DM_INACTIVE_PRESENT_FLAG);
	printf("DM_BUFFER_FULL_FLAG %lu\n", (unsigned long)DM_BUFFER_FULL_FLAG);
	printf("DM_SECURE_DATA_FLAG %lu\n", (unsigned long)DM_SECURE_DATA_FLAG);
	printf("DM_VERSION_MAJOR %d\n", DM_VERSION_MAJOR);
	return 0;
}
