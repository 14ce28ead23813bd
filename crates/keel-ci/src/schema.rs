//! The workflow file's schema as GitHub's template reader uses it: named
//! definitions (mapping, sequence, string, boolean, number, null, one-of) with
//! the contexts an expression may name there. The definitions reachable from
//! `workflow-root-strict` (the editor's checks: every event's keys) and
//! `workflow-root` (what GitHub's runtime reads: events loose) in GitHub's
//! workflow-v1.0 schema (MIT, GitHub),
//! one line a definition in a compact notation, descriptions left out;
//! plus `action-root`, a permissive reading of `action.yml` files.
//!
//! Line syntax: `name: [ctx=a,b,f(0,MAX)] body` where body is
//! `map{prop=type prop!=required-type} [loose=key:value]`, `seq[item]`,
//! `oneof(a b)`, `str`, `str!` (non-empty), `const=text`, `allowed=a,b`,
//! `boolean`, `number` or `null`.

use std::collections::HashMap;
use std::sync::OnceLock;

const SCHEMA: &str = r"
action-root: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,always(0,0),failure(0,0),cancelled(0,0),success(0,0),hashFiles(1,255) oneof(mapping)
workflow-root: map{on=on name=workflow-name description=workflow-description run-name=run-name defaults=workflow-defaults env=workflow-env permissions=permissions concurrency=workflow-concurrency jobs!=jobs}
on: oneof(string sequence on-mapping)
on-mapping: map{workflow_call=workflow-call} loose=non-empty-string:any
workflow-root-strict: map{on!=on-strict name=workflow-name description=workflow-description run-name=run-name defaults=workflow-defaults env=workflow-env permissions=permissions concurrency=workflow-concurrency jobs!=jobs}
on-strict: oneof(on-string-strict on-sequence-strict on-mapping-strict)
workflow-name: str
workflow-description: str
run-name: ctx=github,inputs,vars str
workflow-defaults: map{run=workflow-defaults-run}
workflow-env: ctx=github,inputs,vars,secrets map{} loose=non-empty-string:string
permissions: oneof(permissions-mapping permission-level-shorthand-read-all permission-level-shorthand-write-all)
workflow-concurrency: ctx=github,inputs,vars oneof(string concurrency-mapping)
jobs: map{} loose=job-id:job
on-string-strict: oneof(branch-protection-rule-string check-run-string check-suite-string create-string delete-string deployment-string deployment-status-string discussion-string discussion-comment-string fork-string gollum-string image-version-string issue-comment-string issues-string label-string merge-group-string milestone-string page-build-string project-string project-card-string project-column-string public-string pull-request-string pull-request-comment-string pull-request-review-string pull-request-review-comment-string pull-request-target-string push-string registry-package-string release-string repository-dispatch-string schedule-string status-string watch-string workflow-call-string workflow-dispatch-string workflow-run-string)
on-sequence-strict: seq[on-string-strict]
on-mapping-strict: map{branch_protection_rule=branch-protection-rule check_run=check-run check_suite=check-suite create=create delete=delete deployment=deployment deployment_status=deployment-status discussion=discussion discussion_comment=discussion-comment fork=fork gollum=gollum image_version=image-version issue_comment=issue-comment issues=issues label=label merge_group=merge-group milestone=milestone page_build=page-build project=project project_card=project-card project_column=project-column public=public pull_request=pull-request pull_request_comment=pull-request-comment pull_request_review=pull-request-review pull_request_review_comment=pull-request-review-comment pull_request_target=pull-request-target push=push registry_package=registry-package release=release repository_dispatch=repository-dispatch schedule=schedule status=status watch=watch workflow_call=workflow-call workflow_dispatch=workflow-dispatch workflow_run=workflow-run}
workflow-defaults-run: map{shell=shell working-directory=working-directory}
non-empty-string: str!
permissions-mapping: map{actions=permission-level-any artifact-metadata=permission-level-any attestations=permission-level-any checks=permission-level-any code-quality=permission-level-any contents=permission-level-any copilot-requests=permission-level-write-or-no-access deployments=permission-level-any discussions=permission-level-any drives=permission-level-any id-token=permission-level-write-or-no-access issues=permission-level-any models=permission-level-read-or-no-access packages=permission-level-any pages=permission-level-any pull-requests=permission-level-any repository-projects=permission-level-any security-events=permission-level-any statuses=permission-level-any vulnerability-alerts=permission-level-read-or-no-access}
permission-level-shorthand-read-all: const=read-all
permission-level-shorthand-write-all: const=write-all
concurrency-mapping: map{group!=non-empty-string cancel-in-progress=boolean queue=concurrency-queue}
job-id: str!
job: oneof(job-factory workflow-job)
branch-protection-rule-string: const=branch_protection_rule
check-run-string: const=check_run
check-suite-string: const=check_suite
create-string: const=create
delete-string: const=delete
deployment-string: const=deployment
deployment-status-string: const=deployment_status
discussion-string: const=discussion
discussion-comment-string: const=discussion_comment
fork-string: const=fork
gollum-string: const=gollum
image-version-string: const=image_version
issue-comment-string: const=issue_comment
issues-string: const=issues
label-string: const=label
merge-group-string: const=merge_group
milestone-string: const=milestone
page-build-string: const=page_build
project-string: const=project
project-card-string: const=project_card
project-column-string: const=project_column
public-string: const=public
pull-request-string: const=pull_request
pull-request-comment-string: const=pull_request_comment
pull-request-review-string: const=pull_request_review
pull-request-review-comment-string: const=pull_request_review_comment
pull-request-target-string: const=pull_request_target
push-string: const=push
registry-package-string: const=registry_package
release-string: const=release
repository-dispatch-string: const=branch_protection_rule
schedule-string: const=schedule
status-string: const=status
watch-string: const=watch
workflow-call-string: const=workflow_call
workflow-dispatch-string: const=workflow_dispatch
workflow-run-string: const=workflow_run
branch-protection-rule: oneof(null branch-protection-rule-mapping)
check-run: oneof(null check-run-mapping)
check-suite: oneof(null check-suite-mapping)
create: null
delete: null
deployment: null
deployment-status: null
discussion: oneof(null discussion-mapping)
discussion-comment: oneof(null discussion-comment-mapping)
fork: null
gollum: null
image-version: oneof(null image-version-mapping)
issue-comment: oneof(null issue-comment-mapping)
issues: oneof(null issues-mapping)
label: oneof(null label-mapping)
merge-group: oneof(null merge-group-mapping)
milestone: oneof(null milestone-mapping)
page-build: null
project: oneof(null project-mapping)
project-card: oneof(null project-card-mapping)
project-column: oneof(null project-column-mapping)
public: null
pull-request: oneof(null pull-request-mapping)
pull-request-comment: oneof(null issue-comment-mapping)
pull-request-review: oneof(null pull-request-review-mapping)
pull-request-review-comment: oneof(null pull-request-review-comment-mapping)
pull-request-target: oneof(null pull-request-target-mapping)
push: oneof(null push-mapping)
registry-package: oneof(null registry-package-mapping)
release: oneof(null release-mapping)
repository-dispatch: oneof(null repository-dispatch-mapping)
schedule: seq[cron-mapping]
status: null
watch: oneof(null watch-mapping)
workflow-call: oneof(null workflow-call-mapping)
workflow-dispatch: oneof(null workflow-dispatch-mapping)
workflow-run: oneof(null workflow-run-mapping)
shell: str!
working-directory: str!
permission-level-any: oneof(permission-level-read permission-level-write permission-level-no-access)
permission-level-write-or-no-access: oneof(permission-level-write permission-level-no-access)
permission-level-read-or-no-access: oneof(permission-level-read permission-level-no-access)
concurrency-queue: allowed=single,max
job-factory: map{needs=needs if=job-if strategy=strategy name=string-strategy-context runs-on!=runs-on timeout-minutes=number-strategy-context cancel-timeout-minutes=number-strategy-context continue-on-error=boolean-strategy-context container=container services=services env=job-env environment=job-environment permissions=permissions concurrency=job-concurrency outputs=job-outputs defaults=job-defaults steps=steps snapshot=snapshot}
workflow-job: map{name=string-strategy-context uses!=non-empty-string with=workflow-job-with secrets=workflow-job-secrets needs=needs if=job-if permissions=permissions concurrency=job-concurrency strategy=strategy}
branch-protection-rule-mapping: map{types=branch-protection-rule-activity}
check-run-mapping: map{types=check-run-activity}
check-suite-mapping: map{types=check-suite-activity}
discussion-mapping: map{types=discussion-activity}
discussion-comment-mapping: map{types=discussion-comment-activity}
image-version-mapping: map{types=image-version-activity names=event-names versions=event-versions}
issue-comment-mapping: map{types=issue-comment-activity}
issues-mapping: map{types=issues-activity}
label-mapping: map{types=label-activity}
merge-group-mapping: map{types=merge-group-activity branches=event-branches branches-ignore=event-branches-ignore}
milestone-mapping: map{types=milestone-activity}
project-mapping: map{types=project-activity}
project-card-mapping: map{types=project-card-activity}
project-column-mapping: map{types=project-column-activity}
pull-request-mapping: map{types=pull-request-activity branches=event-branches branches-ignore=event-branches-ignore paths=event-paths paths-ignore=event-paths-ignore}
pull-request-review-mapping: map{types=pull-request-review-activity}
pull-request-review-comment-mapping: map{types=pull-request-review-comment-activity}
pull-request-target-mapping: map{types=pull-request-target-activity branches=event-branches branches-ignore=event-branches-ignore paths=event-paths paths-ignore=event-paths-ignore}
push-mapping: map{branches=event-branches branches-ignore=event-branches-ignore tags=event-tags tags-ignore=event-tags-ignore paths=event-paths paths-ignore=event-paths-ignore}
registry-package-mapping: map{types=registry-package-activity}
release-mapping: map{types=release-activity}
repository-dispatch-mapping: map{types=sequence-of-non-empty-string}
cron-mapping: map{cron!=cron-pattern timezone=timezone-string}
watch-mapping: map{types=watch-activity}
workflow-call-mapping: map{inputs=workflow-call-inputs secrets=workflow-call-secrets outputs=workflow-call-outputs}
workflow-dispatch-mapping: map{inputs=workflow-dispatch-inputs}
workflow-run-mapping: map{types=workflow-run-activity workflows=workflow-run-workflows branches=event-branches branches-ignore=event-branches-ignore}
permission-level-read: const=read
permission-level-write: const=write
permission-level-no-access: const=none
needs: oneof(sequence-of-non-empty-string non-empty-string)
job-if: ctx=github,inputs,vars,needs,always(0,0),failure(0,MAX),cancelled(0,0),success(0,MAX) str
strategy: ctx=github,inputs,vars,needs map{fail-fast=boolean max-parallel=number matrix=matrix}
string-strategy-context: ctx=github,inputs,vars,needs,strategy,matrix str
runs-on: ctx=github,inputs,vars,needs,strategy,matrix oneof(non-empty-string sequence-of-non-empty-string runs-on-mapping)
number-strategy-context: ctx=github,inputs,vars,needs,strategy,matrix number
boolean-strategy-context: ctx=github,inputs,vars,needs,strategy,matrix boolean
container: ctx=github,inputs,vars,needs,strategy,matrix oneof(string container-mapping)
services: ctx=github,inputs,vars,needs,strategy,matrix map{} loose=non-empty-string:services-container
job-env: ctx=github,inputs,vars,needs,strategy,matrix,secrets map{} loose=non-empty-string:string
job-environment: ctx=github,inputs,vars,needs,strategy,matrix oneof(string job-environment-mapping)
job-concurrency: ctx=github,inputs,vars,needs,strategy,matrix oneof(non-empty-string concurrency-mapping)
job-outputs: map{} loose=non-empty-string:string-runner-context
job-defaults: map{run=job-defaults-run}
steps: seq[steps-item]
snapshot: oneof(non-empty-string snapshot-mapping)
workflow-job-with: map{} loose=non-empty-string:scalar-needs-context
workflow-job-secrets: oneof(workflow-job-secrets-mapping workflow-job-secrets-inherit)
branch-protection-rule-activity: oneof(branch-protection-rule-activity-type branch-protection-rule-activity-types)
check-run-activity: oneof(check-run-activity-type check-run-activity-types)
check-suite-activity: oneof(check-suite-activity-type check-suite-activity-types)
discussion-activity: oneof(discussion-activity-type discussion-activity-types)
discussion-comment-activity: oneof(discussion-comment-activity-type discussion-comment-activity-types)
image-version-activity: oneof(image-version-activity-type image-version-activity-types)
event-names: oneof(non-empty-string sequence-of-non-empty-string)
event-versions: oneof(non-empty-string sequence-of-non-empty-string)
issue-comment-activity: oneof(issue-comment-activity-type issue-comment-activity-types)
issues-activity: oneof(issues-activity-type issues-activity-types)
label-activity: oneof(label-activity-type label-activity-types)
merge-group-activity: oneof(merge-group-activity-type merge-group-activity-types)
event-branches: oneof(non-empty-string sequence-of-non-empty-string)
event-branches-ignore: oneof(non-empty-string sequence-of-non-empty-string)
milestone-activity: oneof(milestone-activity-type milestone-activity-types)
project-activity: oneof(project-activity-type project-activity-types)
project-card-activity: oneof(project-card-activity-type project-card-activity-types)
project-column-activity: oneof(project-column-activity-type project-column-activity-types)
pull-request-activity: oneof(pull-request-activity-type pull-request-activity-types)
event-paths: oneof(non-empty-string sequence-of-non-empty-string)
event-paths-ignore: oneof(non-empty-string sequence-of-non-empty-string)
pull-request-review-activity: oneof(pull-request-review-activity-type pull-request-review-activity-types)
pull-request-review-comment-activity: oneof(pull-request-review-comment-activity-type pull-request-review-comment-activity-types)
pull-request-target-activity: oneof(pull-request-target-activity-type pull-request-target-activity-types)
event-tags: oneof(non-empty-string sequence-of-non-empty-string)
event-tags-ignore: oneof(non-empty-string sequence-of-non-empty-string)
registry-package-activity: oneof(registry-package-activity-type registry-package-activity-types)
release-activity: oneof(release-activity-type release-activity-types)
sequence-of-non-empty-string: seq[non-empty-string]
cron-pattern: str!
timezone-string: str!
watch-activity: oneof(watch-activity-type watch-activity-types)
workflow-call-inputs: map{} loose=non-empty-string:workflow-call-input-definition
workflow-call-secrets: map{} loose=workflow-call-secret-name:workflow-call-secret-definition
workflow-call-outputs: map{} loose=workflow-call-output-name:workflow-call-output-definition
workflow-dispatch-inputs: oneof(null workflow-dispatch-inputs-mapping)
workflow-dispatch-inputs-mapping: map{} loose=workflow-dispatch-input-name:workflow-dispatch-input
workflow-run-activity: oneof(workflow-run-activity-type workflow-run-activity-types)
workflow-run-workflows: oneof(non-empty-string sequence-of-non-empty-string)
matrix: map{include=matrix-filter exclude=matrix-filter} loose=non-empty-string:sequence
runs-on-mapping: map{group=non-empty-string labels=runs-on-labels}
container-mapping: map{image=non-empty-string options=string env=container-env ports=sequence-of-non-empty-string volumes=sequence-of-non-empty-string credentials=container-registry-credentials}
services-container: ctx=github,inputs,vars,needs,strategy,matrix oneof(non-empty-string service-container-mapping)
job-environment-mapping: map{name!=job-environment-name url=string-runner-context-no-secrets deployment=boolean}
string-runner-context: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env str
job-defaults-run: ctx=github,inputs,vars,strategy,matrix,needs,env map{shell=shell working-directory=working-directory}
steps-item: oneof(run-step regular-step wait-step wait-all-step cancel-step parallel-step)
snapshot-mapping: map{image-name!=non-empty-string if=snapshot-if version=non-empty-string}
scalar-needs-context: ctx=github,inputs,vars,needs,strategy,matrix oneof(string boolean number)
workflow-job-secrets-mapping: map{} loose=non-empty-string:scalar-needs-context-with-secrets
workflow-job-secrets-inherit: const=inherit
branch-protection-rule-activity-type: allowed=created,edited,deleted
branch-protection-rule-activity-types: seq[branch-protection-rule-activity-type]
check-run-activity-type: allowed=completed,created,rerequested,requested_action
check-run-activity-types: seq[check-run-activity-type]
check-suite-activity-type: allowed=completed
check-suite-activity-types: seq[check-suite-activity-type]
discussion-activity-type: allowed=created,edited,deleted,transferred,pinned,unpinned,labeled,unlabeled,locked,unlocked,category_changed,answered,unanswered
discussion-activity-types: seq[discussion-activity-type]
discussion-comment-activity-type: allowed=created,edited,deleted
discussion-comment-activity-types: seq[discussion-comment-activity-type]
image-version-activity-type: allowed=created,ready,deleted
image-version-activity-types: seq[image-version-activity-type]
issue-comment-activity-type: allowed=created,edited,deleted
issue-comment-activity-types: seq[issue-comment-activity-type]
issues-activity-type: allowed=opened,edited,deleted,transferred,pinned,unpinned,closed,reopened,assigned,unassigned,labeled,unlabeled,locked,unlocked,milestoned,demilestoned,field_added,field_removed,typed,untyped
issues-activity-types: seq[issues-activity-type]
label-activity-type: allowed=created,edited,deleted
label-activity-types: seq[label-activity-type]
merge-group-activity-type: allowed=checks_requested
merge-group-activity-types: seq[merge-group-activity-type]
milestone-activity-type: allowed=created,closed,opened,edited,deleted
milestone-activity-types: seq[milestone-activity-type]
project-activity-type: allowed=created,closed,reopened,edited,deleted
project-activity-types: seq[project-activity-type]
project-card-activity-type: allowed=created,moved,converted,edited,deleted
project-card-activity-types: seq[project-card-activity-type]
project-column-activity-type: allowed=created,updated,moved,deleted
project-column-activity-types: seq[project-column-activity-type]
pull-request-activity-type: allowed=assigned,unassigned,labeled,unlabeled,opened,edited,closed,reopened,synchronize,converted_to_draft,locked,unlocked,enqueued,dequeued,milestoned,demilestoned,ready_for_review,review_requested,review_request_removed,auto_merge_enabled,auto_merge_disabled,stacked
pull-request-activity-types: seq[pull-request-activity-type]
pull-request-review-activity-type: allowed=submitted,edited,dismissed
pull-request-review-activity-types: seq[pull-request-review-activity-type]
pull-request-review-comment-activity-type: allowed=created,edited,deleted
pull-request-review-comment-activity-types: seq[pull-request-review-comment-activity-type]
pull-request-target-activity-type: allowed=assigned,unassigned,labeled,unlabeled,opened,edited,closed,reopened,synchronize,converted_to_draft,locked,unlocked,enqueued,dequeued,milestoned,demilestoned,ready_for_review,review_requested,review_request_removed,auto_merge_enabled,auto_merge_disabled,stacked
pull-request-target-activity-types: seq[pull-request-target-activity-type]
registry-package-activity-type: allowed=published,updated
registry-package-activity-types: seq[registry-package-activity-type]
release-activity-type: allowed=published,unpublished,created,edited,deleted,prereleased,released
release-activity-types: seq[release-activity-type]
watch-activity-type: allowed=started
watch-activity-types: seq[watch-activity-type]
workflow-call-input-definition: map{description=string type!=workflow-call-input-type required=boolean default=workflow-call-input-default}
workflow-call-secret-name: str!
workflow-call-secret-definition: oneof(null workflow-call-secret-mapping-definition)
workflow-call-output-name: str!
workflow-call-output-definition: map{description=string value!=workflow-output-context}
workflow-dispatch-input-name: str!
workflow-dispatch-input: oneof(null workflow-dispatch-input-mapping)
workflow-dispatch-input-mapping: map{description=string type=workflow-dispatch-input-type required=boolean default=workflow-dispatch-input-default options=sequence-of-string}
workflow-run-activity-type: allowed=requested,completed,in_progress
workflow-run-activity-types: seq[workflow-run-activity-type]
matrix-filter: seq[matrix-filter-item]
runs-on-labels: oneof(non-empty-string sequence-of-non-empty-string)
container-env: map{} loose=non-empty-string:string-runner-context
container-registry-credentials: ctx=github,inputs,vars,secrets,env map{username=non-empty-string password=non-empty-string}
service-container-mapping: map{image=non-empty-string options=string env=container-env ports=sequence-of-non-empty-string volumes=sequence-of-non-empty-string credentials=container-registry-credentials entrypoint=string command=string}
job-environment-name: ctx=github,inputs,vars,needs,strategy,matrix str
string-runner-context-no-secrets: ctx=github,inputs,vars,needs,strategy,matrix,steps,job,runner,env str
run-step: map{name=step-name id=step-id if=step-if timeout-minutes=step-timeout-minutes run!=string-steps-context continue-on-error=step-continue-on-error env=step-env working-directory=string-steps-context shell=shell background=step-background}
regular-step: map{name=step-name id=step-id if=step-if continue-on-error=step-continue-on-error timeout-minutes=step-timeout-minutes uses!=step-uses with=step-with env=step-env background=step-background}
wait-step: map{name=step-name id=step-id continue-on-error=step-continue-on-error wait!=step-wait-target}
wait-all-step: map{name=step-name id=step-id continue-on-error=step-continue-on-error wait-all!=step-wait-all-value}
cancel-step: map{name=step-name id=step-id continue-on-error=step-continue-on-error cancel!=step-cancel-target}
parallel-step: map{parallel!=parallel-steps}
snapshot-if: ctx=github,inputs,vars,needs,strategy,matrix str
scalar-needs-context-with-secrets: ctx=github,inputs,vars,needs,secrets,strategy,matrix oneof(string boolean number)
workflow-call-input-type: oneof(input-type-string input-type-boolean input-type-number)
workflow-call-input-default: ctx=github,inputs,vars oneof(string boolean number)
workflow-call-secret-mapping-definition: map{description=string required=boolean}
workflow-output-context: ctx=github,inputs,vars,jobs str
workflow-dispatch-input-type: oneof(input-type-string input-type-boolean input-type-number input-type-environment input-type-choice)
workflow-dispatch-input-default: oneof(string boolean number)
sequence-of-string: seq[string]
matrix-filter-item: map{} loose=non-empty-string:any
step-name: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,hashFiles(1,255) str
step-id: str!
step-if: ctx=github,inputs,vars,needs,strategy,matrix,steps,job,runner,env,always(0,0),failure(0,0),cancelled(0,0),success(0,0),hashFiles(1,255) str
step-timeout-minutes: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,hashFiles(1,255) number
string-steps-context: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,hashFiles(1,255) str
step-continue-on-error: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,hashFiles(1,255) boolean
step-env: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,hashFiles(1,255) map{} loose=non-empty-string:string
step-background: boolean
step-uses: str!
step-with: ctx=github,inputs,vars,needs,strategy,matrix,secrets,steps,job,runner,env,hashFiles(1,255) map{} loose=non-empty-string:string
step-wait-target: oneof(non-empty-string sequence-of-non-empty-string)
step-wait-all-value: oneof(null boolean)
step-cancel-target: str!
parallel-steps: seq[steps-item]
input-type-string: const=string
input-type-boolean: const=boolean
input-type-number: const=number
input-type-environment: const=environment
input-type-choice: const=choice
";

#[derive(Debug, Clone)]
pub struct Prop {
    pub name: String,
    pub ty: String,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub enum Body {
    Null,
    Boolean,
    Number,
    /// `constant`: only that text; `non_empty`: any text but "".
    String {
        constant: Option<String>,
        non_empty: bool,
    },
    Sequence(String),
    Mapping {
        props: Vec<Prop>,
        loose: Option<(String, String)>,
    },
    OneOf(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Def {
    pub name: String,
    /// Contexts and functions (`name(min,max)`) expressions may use here.
    pub context: Vec<String>,
    pub body: Body,
}

impl Def {
    pub fn is_scalar(&self) -> bool {
        matches!(
            self.body,
            Body::Null | Body::Boolean | Body::Number | Body::String { .. }
        )
    }
}

#[derive(Debug)]
pub struct Schema {
    defs: HashMap<String, Def>,
}

fn builtin(name: &str, body: Body) -> (String, Def) {
    (
        name.to_string(),
        Def {
            name: name.to_string(),
            context: Vec::new(),
            body,
        },
    )
}

fn parse_schema() -> Schema {
    let mut defs: HashMap<String, Def> = [
        builtin("null", Body::Null),
        builtin("boolean", Body::Boolean),
        builtin("number", Body::Number),
        builtin(
            "string",
            Body::String {
                constant: None,
                non_empty: false,
            },
        ),
        builtin("sequence", Body::Sequence("any".into())),
        builtin(
            "mapping",
            Body::Mapping {
                props: Vec::new(),
                loose: Some(("string".into(), "any".into())),
            },
        ),
        builtin(
            "any",
            Body::OneOf(
                ["null", "boolean", "number", "string", "sequence", "mapping"]
                    .map(String::from)
                    .to_vec(),
            ),
        ),
    ]
    .into_iter()
    .collect();
    for line in SCHEMA.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, mut rest) = line.split_once(": ").expect("schema line has a name");
        let mut context = Vec::new();
        if let Some(r) = rest.strip_prefix("ctx=") {
            let (c, r) = r.split_once(' ').expect("context then body");
            context = split_top_commas(c);
            rest = r;
        }
        let body = if let Some(r) = rest.strip_prefix("map{") {
            let (props, tail) = r.split_once('}').expect("closing brace");
            let props = props
                .split_whitespace()
                .map(|p| {
                    let (n, t) = p.split_once('=').expect("prop=type");
                    let required = n.ends_with('!');
                    Prop {
                        name: n.trim_end_matches('!').to_string(),
                        ty: t.to_string(),
                        required,
                    }
                })
                .collect();
            let loose = tail.trim().strip_prefix("loose=").map(|l| {
                let (k, v) = l.split_once(':').expect("key:value");
                (k.to_string(), v.to_string())
            });
            Body::Mapping { props, loose }
        } else if let Some(r) = rest.strip_prefix("seq[") {
            Body::Sequence(r.trim_end_matches(']').to_string())
        } else if let Some(r) = rest.strip_prefix("oneof(") {
            Body::OneOf(
                r.trim_end_matches(')')
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            )
        } else if let Some(r) = rest.strip_prefix("const=") {
            Body::String {
                constant: Some(r.to_string()),
                non_empty: false,
            }
        } else if let Some(r) = rest.strip_prefix("allowed=") {
            let mut names = Vec::new();
            for v in r.split(',') {
                let n = format!("{name}-{v}");
                defs.insert(
                    n.clone(),
                    Def {
                        name: n.clone(),
                        context: Vec::new(),
                        body: Body::String {
                            constant: Some(v.to_string()),
                            non_empty: false,
                        },
                    },
                );
                names.push(n);
            }
            Body::OneOf(names)
        } else {
            match rest {
                "str" => Body::String {
                    constant: None,
                    non_empty: false,
                },
                "str!" => Body::String {
                    constant: None,
                    non_empty: true,
                },
                "boolean" => Body::Boolean,
                "number" => Body::Number,
                "null" => Body::Null,
                other => panic!("bad schema body {other}"),
            }
        };
        defs.insert(
            name.to_string(),
            Def {
                name: name.to_string(),
                context,
                body,
            },
        );
    }
    Schema { defs }
}

/// `a,f(0,1),b` → `a`, `f(0,1)`, `b`.
fn split_top_commas(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

impl Schema {
    /// The workflow schema (parsed once).
    pub fn workflow() -> &'static Schema {
        static S: OnceLock<Schema> = OnceLock::new();
        S.get_or_init(parse_schema)
    }

    pub fn get(&self, name: &str) -> &Def {
        self.defs
            .get(name)
            .unwrap_or_else(|| panic!("schema definition {name} missing"))
    }

    /// Scalar definitions reachable through one-ofs.
    pub fn scalars<'a>(&'a self, d: &'a Def, out: &mut Vec<&'a Def>) {
        match &d.body {
            Body::OneOf(names) => {
                for n in names {
                    self.scalars(self.get(n), out);
                }
            }
            _ if d.is_scalar() => out.push(d),
            _ => {}
        }
    }

    /// `d` itself when it is a sequence, else the sequences among its
    /// one-of members (one level, as GitHub's reader does).
    pub fn sequences<'a>(&'a self, d: &'a Def) -> Vec<&'a Def> {
        self.of_type(d, |b| matches!(b, Body::Sequence(_)))
    }

    pub fn mappings<'a>(&'a self, d: &'a Def) -> Vec<&'a Def> {
        self.of_type(d, |b| matches!(b, Body::Mapping { .. }))
    }

    fn of_type<'a>(&'a self, d: &'a Def, f: impl Fn(&Body) -> bool) -> Vec<&'a Def> {
        if f(&d.body) {
            return vec![d];
        }
        match &d.body {
            Body::OneOf(names) => names
                .iter()
                .map(|n| self.get(n))
                .filter(|x| f(&x.body))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let s = Schema::workflow();
        for d in s.defs.values() {
            let refs: Vec<&String> = match &d.body {
                Body::Sequence(i) => vec![i],
                Body::Mapping { props, loose } => props
                    .iter()
                    .map(|p| &p.ty)
                    .chain(loose.iter().flat_map(|(k, v)| [k, v]))
                    .collect(),
                Body::OneOf(n) => n.iter().collect(),
                _ => Vec::new(),
            };
            for r in refs {
                assert!(s.defs.contains_key(r), "{} refers to missing {r}", d.name);
            }
        }
    }
}
